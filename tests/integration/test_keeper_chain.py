"""The oracle keeper on a live chain: Chainlink push rules, one RiskPusher transaction per round
(pushes, poke and funding accrual together), a failed push retried exactly once, and a restart that
neither double-pushes nor skips a round."""

from __future__ import annotations

import pytest

from ballast.chain import Chain
from ballast.config import load_config
from ballast.deploy import deploy
from ballast.keeper import ChainKeeper

pytestmark = pytest.mark.integration


def _rounds(k: ChainKeeper) -> dict[str, int]:
    return {name: v[2] for name, v in k.onchain().items()}


def _block_txs(chain: Chain) -> list[str]:
    blk = chain.w3.eth.get_block("latest")
    return ["0x" + bytes(h).hex().removeprefix("0x") for h in blk["transactions"]]  # type: ignore[union-attr]


def test_keeper_rules_failure_and_restart(chain: Chain) -> None:
    dep = deploy(chain, load_config())
    admin = dep.admin
    feeds = dep.feeds[0]
    k = ChainKeeper(chain, feeds, admin, pusher=dep.pusher, interval_sec=900)
    for p in (50_000.0, 50_100.0, 49_900.0, 50_050.0):
        k.observe(p)
    r0 = _rounds(k)
    _, _, last_accrual0 = dep.engine.functions.fundingState(0).call()
    rep = k.step(k.targets())
    assert not rep.failed and rep.poked and rep.accrued
    assert "price" in rep.pushed or abs(50_050 / 50_000 - 1) <= k.rules.price_dev
    after = _rounds(k)
    for name, v in rep.pushed.items():
        assert after[name] == r0[name] + 1, name
    # One transaction: the pushes, the poke and the accrual landed together (same block, same tx).
    assert _block_txs(chain) == [rep.tx_hash]
    _, _, last_accrual = dep.engine.functions.fundingState(0).call()
    assert last_accrual == chain.latest_timestamp() > last_accrual0
    for name in rep.pushed:
        assert feeds[name].functions.latestRoundData().call()[3] == last_accrual

    # Same targets again: nothing is due, nothing is pushed (no double push), no transaction.
    head = chain.w3.eth.block_number
    again = k.step(k.targets())
    assert again.pushed == {} and _rounds(k) == after and chain.w3.eth.block_number == head

    # A 10% move: the price feed is due. The push fails (the pusher's transmitter right on the price
    # feed revoked): reported, and nothing of the round landed, the other feeds included.
    k.observe(45_000.0)
    chain.transact(feeds["price"].functions.setTransmitter(dep.pusher.address, False), admin)
    failed = k.step(k.targets())
    assert "price" in failed.failed and failed.pushed == {} and not failed.poked
    assert _rounds(k) == after
    # Restored: the next round pushes it exactly once.
    chain.transact(feeds["price"].functions.setTransmitter(dep.pusher.address, True), admin)
    ok = k.step(k.targets())
    assert ok.pushed.get("price") == 45_000 * 10**8
    assert _rounds(k)["price"] == after["price"] + 1

    # Restart: a new keeper with the same observations finds nothing due.
    k2 = ChainKeeper(chain, feeds, admin, pusher=dep.pusher, interval_sec=900)
    for p in k.prices:
        k2.observe(p)
    before = _rounds(k2)
    assert k2.step(k2.targets()).pushed == {}
    assert _rounds(k2) == before

    # Heartbeat: after the refresh interval everything is pushed once more, poked and accrued, in
    # one transaction.
    chain.increase_time(k.rules.refresh_sec + 1)
    chain.mine()
    hb = k2.step(k2.targets())
    assert set(hb.pushed) == {"price", "volatility", "funding", "depth", "skew"}
    assert hb.poked and hb.accrued and _block_txs(chain) == [hb.tx_hash]
    assert {n: r + 1 for n, r in before.items()} == _rounds(k2)

    # Only the keeper role may push through the pusher.
    keeper_role = dep.pusher.functions.KEEPER_ROLE().call()
    assert dep.pusher.functions.hasRole(keeper_role, admin).call()
    assert not dep.pusher.functions.hasRole(keeper_role, dep.engine.address).call()


def test_keeper_publishes_the_calibrated_tail(chain: Chain) -> None:
    """With a tail estimator (issue 12) the keeper's round publishes the tails through
    ``RiskPusher.pushWithTails`` (before enough windows: the calibration's prior), the controller
    then prices with them, and an unchanged estimate is not re-published within the refresh."""
    from ballast.keeper import TailPublishing
    from ballast.tail import TailSpec

    dep = deploy(chain, load_config())
    c = dep.controller
    tail = TailPublishing(alpha=0.99, horizon_sec=3600, spec=TailSpec(), z=2.326,
                          prior={"long": 1.7, "short": 1.2})
    k = ChainKeeper(chain, dep.feeds[0], dep.admin, pusher=dep.pusher, interval_sec=900, tail=tail)
    for i in range(60):  # enough bars for the EWMA, too few windows for the 99% quantile: the prior
        k.observe(50_000.0 * (1.0 + 0.004 * ((i * 7) % 5 - 2)))
    lev0 = c.functions.maxLeverageWad(0, True).call()
    rep = k.step(k.targets())
    assert not rep.failed and rep.poked, rep
    ok, tl, at = c.functions.tailFeed(0, True).call()
    _, ts, _ = c.functions.tailFeed(0, False).call()
    assert ok and at > 0
    assert (tl, ts) == (rep.pushed["tail_long"], rep.pushed["tail_short"]) == (1_700_000 * 10**12, 1_200_000 * 10**12)
    assert c.functions.maxLeverageWad(0, True).call() < lev0, "the long tail above the live tail lowers leverage"
    rep2 = k.step(k.targets(), now=chain.latest_timestamp() + 1)
    assert "tail_long" not in rep2.pushed, "an unchanged tail is not re-published within the refresh"
