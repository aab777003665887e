"""`ballast keeper` against a node with NO unlocked accounts (Anvil --accounts 0): deployed with a
local key, pushes signed locally by a separate keeper key (KEEPER_ROLE granted by the admin), the
health and metrics endpoint answers, a restart does not push again, and a push whose receipt timed
out is not followed by a second push on top of it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from web3 import Web3

from ballast.chain import Anvil, Chain, build_contracts, free_port
from ballast.cli import main as cli_main
from ballast.deploy import deploy
from ballast.config import load_config
from ballast.deployments import deploy_and_record, key_signer, make_recording_chain
from ballast.keeper import ChainKeeper, GasStrategy

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def locked_node() -> Iterator[Anvil]:
    build_contracts()
    with Anvil(accounts=0) as node:
        yield node


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return int(r.status), r.read().decode()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read().decode()


def _keeper(url: str, dep: Path, key: str, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BALLAST_")}
    env["BALLAST_KEEPER_KEY"] = key
    return subprocess.Popen([sys.executable, "-m", "ballast", "keeper", "--rpc-url", url, "--deployment", str(dep),
                             "--priority-fee-gwei", "1", "--max-fee-gwei", "50", *args],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in out.splitlines() if x.strip()]


def _rounds(chain: Chain, feeds: dict[str, str]) -> dict[str, int]:
    return {k: int(chain.at("MockAggregator", a).functions.latestRoundData().call()[0]) for k, a in feeds.items()}


def test_keeper_signs_locally_on_a_node_without_unlocked_accounts(locked_node: Anvil, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    chain = Chain(locked_node.url)
    assert chain.accounts() == []  # nothing unlocked: every transaction below is signed locally
    deployer, keeper = Account.create(), Account.create()
    for a in (deployer, keeper):
        chain.set_balance(a.address, 10 * 10**18)
    res = deploy_and_record(locked_node.url, key_signer(deployer.key.hex()), directory=tmp_path, archive=False,
                            network="anvil --accounts 0", log=lambda _: None)
    assert all(c.ok for c in res.checks)
    rec = res.record
    feeds: dict[str, str] = rec["feeds"]["0"]
    admin_chain = make_recording_chain(locked_node.url, key_signer(deployer.key.hex()), log=lambda _: None)
    pusher = admin_chain.at("RiskPusher", rec["pusher"])
    key = keeper.key.hex()

    # Without KEEPER_ROLE the keeper refuses to start (it would only send reverting pushes).
    os.environ.pop("BALLAST_KEEPER_KEY", None)
    try:
        os.environ["BALLAST_KEEPER_KEY"] = key
        assert cli_main(["keeper", "--rpc-url", locked_node.url, "--deployment", str(res.path), "--rounds", "1"]) == 2
        assert "KEEPER_ROLE" in capsys.readouterr().err
        # No key at all: the node has no unlocked account to fall back on (local chain id).
        del os.environ["BALLAST_KEEPER_KEY"]
        assert cli_main(["keeper", "--rpc-url", locked_node.url, "--deployment", str(res.path), "--rounds", "1"]) == 2
        err = capsys.readouterr().err
        assert "no unlocked account" in err and "BALLAST_KEEPER_KEY" in err
    finally:
        os.environ.pop("BALLAST_KEEPER_KEY", None)
    admin_chain.transact(pusher.functions.grantRole(pusher.functions.KEEPER_ROLE().call(), keeper.address),
                         deployer.address)

    r0 = _rounds(chain, feeds)
    port = free_port()
    p = _keeper(locked_node.url, res.path, key, "--sleep", "0.2", "--metrics-port", str(port))
    try:
        deadline = time.monotonic() + 60
        health: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                code, body = _get(f"http://127.0.0.1:{port}/health")
                health = json.loads(body)
                if health.get("rounds", 0) >= 3:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert p.poll() is None, p.stderr.read() if p.stderr else ""
            time.sleep(0.2)
        assert code == 200 and health["ok"] and health["rounds"] >= 3, health
        assert health["transactions"] == 1 and health["failures"] == 0 and health["last_tx"]
        code, metrics = _get(f"http://127.0.0.1:{port}/metrics")
        assert code == 200
        assert f'ballast_keeper_transactions_total{{sender="{keeper.address}",market="0"}} 1' in metrics
        assert "# TYPE ballast_keeper_rounds_total counter" in metrics and "ballast_keeper_up{" in metrics
    finally:
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    logs = _lines(out)
    assert logs[0]["event"] == "start" and logs[0]["signer"] == "local key" and logs[-1]["event"] == "stop"
    rounds = [x for x in logs if x["event"] == "round"]
    # The price feed does not move: once warmed up (3 samples) the keeper's own volatility is due,
    # pushed once; every other round is idle.
    pushed = [x for x in rounds if x["status"] == "pushed"]
    assert len(pushed) == 1 and len(rounds) >= 3, rounds
    first = pushed[0]
    assert first["tx"] == health["last_tx"] and first["gas_used"] > 0 and first["block"] > 0 and first["poked"]
    assert first["fee_paid_wei"] > 0 and first["latency_s"] >= 0 and "volatility" in first["pushed"]
    assert all(x["status"] == "idle" and x["tx"] is None for x in rounds if x is not first)
    tx = chain.w3.eth.get_transaction(first["tx"])
    assert Web3.to_checksum_address(tx["from"]) == keeper.address and tx["to"] == pusher.address
    assert tx["type"] == 2 and tx["maxPriorityFeePerGas"] == 10**9 and tx["maxFeePerGas"] <= 50 * 10**9
    after = _rounds(chain, feeds)
    assert {k for k in feeds if after[k] == r0[k] + 1} == set(first["pushed"])
    assert all(after[k] == r0[k] for k in feeds if k not in first["pushed"])
    assert chain.w3.eth.get_transaction_count(keeper.address) == 1

    # Restart: the new process reads the feeds, finds nothing due and sends nothing.
    head = chain.w3.eth.block_number
    p2 = _keeper(locked_node.url, res.path, key, "--rounds", "2", "--sleep", "0")
    out2, err2 = p2.communicate(timeout=60)
    assert p2.returncode == 0, err2
    assert [x["status"] for x in _lines(out2) if x["event"] == "round"] == ["idle", "idle"]
    assert chain.w3.eth.block_number == head and _rounds(chain, feeds) == after
    assert chain.w3.eth.get_transaction_count(keeper.address) == 1

    # After the refresh interval a restarted keeper pushes every feed once (nonce from the node).
    chain.increase_time(1_801)
    chain.mine()
    p3 = _keeper(locked_node.url, res.path, key, "--rounds", "2", "--sleep", "0")
    out3, err3 = p3.communicate(timeout=60)
    assert p3.returncode == 0, err3
    st = [x for x in _lines(out3) if x["event"] == "round"]
    assert [x["status"] for x in st] == ["pushed", "idle"] and len(st[0]["pushed"]) == len(feeds)
    assert _rounds(chain, feeds) == {k: v + 1 for k, v in after.items()}
    assert chain.w3.eth.get_transaction_count(keeper.address) == 2


def test_no_push_on_top_of_a_pending_one(locked_node: Anvil) -> None:
    """A push not mined within the receipt timeout stays pending: the next rounds send nothing on
    top of it; once it lands, nothing is due (it was the round's push): one push, not two."""
    chain = Chain(locked_node.url)
    admin = Account.create()
    chain.set_balance(admin.address, 10 * 10**18)
    signer = key_signer(admin.key.hex())
    dep = deploy(make_recording_chain(locked_node.url, signer, log=lambda _: None), load_config())
    feeds = dep.feeds[0]
    k = ChainKeeper(chain, feeds, pusher=dep.pusher, signer=signer, receipt_timeout_sec=0.5,
                    gas=GasStrategy(priority_fee_gwei=1.0, max_fee_gwei=50.0))
    for px in (50_000.0, 50_100.0, 49_900.0, 50_050.0):
        k.observe(px)
    before = {n: int(f.functions.latestRoundData().call()[0]) for n, f in feeds.items()}
    nonce = chain.w3.eth.get_transaction_count(admin.address)
    chain.set_automine(False)
    try:
        slow = k.step(k.targets())
        assert slow.tx_hash and slow.failed and "no receipt" in next(iter(slow.failed.values()))
        again = k.step(k.targets())
        assert again.skipped and "pending" in again.skipped and not again.tx_hash
        assert chain.w3.eth.get_transaction_count(admin.address, "pending") == nonce + 1
        chain.mine()
    finally:
        chain.set_automine(True)
    assert chain.w3.eth.get_transaction_receipt(slow.tx_hash)["status"] == 1
    landed = k.step(k.targets())
    assert landed.status == "idle" and not landed.tx_hash
    after = {n: int(f.functions.latestRoundData().call()[0]) for n, f in feeds.items()}
    assert {n for n in feeds if after[n] == before[n] + 1} == set(slow.due)
    assert chain.w3.eth.get_transaction_count(admin.address) == nonce + 1
