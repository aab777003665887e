"""The oracle keeper on a live chain: Chainlink push rules, a failed push retried exactly once,
and a restart that neither double-pushes nor skips a round."""

from __future__ import annotations

import pytest

from ballast.chain import Chain
from ballast.config import load_config
from ballast.deploy import deploy
from ballast.keeper import ChainKeeper

pytestmark = pytest.mark.integration


def _rounds(k: ChainKeeper) -> dict[str, int]:
    return {name: v[2] for name, v in k.onchain().items()}


def test_keeper_rules_failure_and_restart(chain: Chain) -> None:
    dep = deploy(chain, load_config())
    admin = dep.admin
    feeds = dep.feeds[0]
    k = ChainKeeper(chain, feeds, admin, controller=dep.controller, interval_sec=900)
    for p in (50_000.0, 50_100.0, 49_900.0, 50_050.0):
        k.observe(p)
    r0 = _rounds(k)
    rep = k.step(k.targets())
    assert not rep.failed
    assert "price" in rep.pushed or abs(50_050 / 50_000 - 1) <= k.rules.price_dev
    after = _rounds(k)
    for name, v in rep.pushed.items():
        assert after[name] == r0[name] + 1, name

    # Same targets again: nothing is due, nothing is pushed (no double push).
    again = k.step(k.targets())
    assert again.pushed == {} and _rounds(k) == after

    # A 10% move: the price feed is due. The push fails (transmitter revoked): reported, no round.
    k.observe(45_000.0)
    chain.transact(feeds["price"].functions.setTransmitter(admin, False), admin)
    failed = k.step(k.targets())
    assert "price" in failed.failed and _rounds(k)["price"] == after["price"]
    # Restored: the next round pushes it exactly once.
    chain.transact(feeds["price"].functions.setTransmitter(admin, True), admin)
    ok = k.step(k.targets())
    assert ok.pushed.get("price") == 45_000 * 10**8
    assert _rounds(k)["price"] == after["price"] + 1

    # Restart: a new keeper with the same observations finds nothing due.
    k2 = ChainKeeper(chain, feeds, admin, controller=dep.controller, interval_sec=900)
    for p in k.prices:
        k2.observe(p)
    before = _rounds(k2)
    assert k2.step(k2.targets()).pushed == {}
    assert _rounds(k2) == before

    # Heartbeat: after the refresh interval everything is pushed once more, and the controller poked.
    chain.increase_time(k.rules.refresh_sec + 1)
    chain.mine()
    hb = k2.step(k2.targets())
    assert set(hb.pushed) == {"price", "volatility", "funding", "depth", "skew"}
    assert hb.poked
