"""``ballast deploy`` against an RPC URL with a locally signing deployer: the deployments file, the
refusal to redeploy over it, --force, and --verify (immutables masked; tampered code caught)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from web3 import Web3

from ballast.chain import Anvil, Chain, build_contracts
from ballast.deployments import (
    build_code_hash,
    build_runtime,
    deploy_cli,
    keccak_hex,
    load_brownie_account,
    load_record,
    mask_immutables,
)
from ballast.errors import ValidationError

pytestmark = pytest.mark.integration
CHAIN_ID = 4242  # not a local dev chain id: the file goes where a testnet's would (here a tmp dir)


@pytest.fixture(scope="module")
def node() -> Iterator[Anvil]:
    build_contracts()
    with Anvil(extra_args=["--chain-id", str(CHAIN_ID)]) as n:
        yield n


def _json_int(x: int) -> int | str:
    """An integer as the deployments file stores it (beyond 2^53: a decimal string)."""
    return x if abs(x) <= 2**53 - 1 else str(x)


def _funded_key(chain: Chain) -> str:
    acct = Account.create()
    chain.set_balance(acct.address, 100 * 10**18)
    return "0x" + bytes(acct.key).hex()


def test_deploy_record_refuse_force_verify(node: Anvil, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    chain = Chain(node.url)
    key = _funded_key(chain)
    deployer = Account.from_key(key).address
    monkeypatch.setenv("BALLAST_DEPLOYER_KEY", key)
    monkeypatch.delenv("BALLAST_ACCOUNT", raising=False)
    out = tmp_path / "deployments"
    url = node.url + "/?apikey=do-not-store-me"
    base = ["--rpc-url", url, "--deployments-dir", str(out), "--yes"]

    assert deploy_cli(base) == 0
    path = out / f"{CHAIN_ID}.json"
    text = path.read_text()
    assert "do-not-store-me" not in text and key[2:] not in text and key[2:] not in capsys.readouterr().out
    rec = load_record(path)
    assert rec["chainId"] == CHAIN_ID and rec["deployer"] == deployer == rec["admin"]
    assert rec["network"] == node.url  # scheme, host and port only
    engine = rec["contracts"]["MarginEngine"]
    assert engine["address"] == rec["engine"]
    # Constructor arguments as sent: admin, token, controller, the engine config tuple (WAD).
    assert engine["constructorArgs"][:3] == [deployer, rec["usd"], rec["controller"]]
    assert rec["contracts"]["LeverageController"]["constructorArgs"] == [deployer, 86400]
    assert rec["config"]["sha256"].startswith("0x") and rec["config"]["path"] == "config/markets.toml"
    assert set(rec["markets"][0]["feeds"]) == {"price", "volatility", "funding", "depth", "skew"}
    assert rec["feeds"]["0"] == {k: e["address"] for k, e in rec["markets"][0]["feeds"].items()}
    assert rec["kind"] == "dynamic" and rec["contracts"]["MockUSD"]["address"] == rec["usd"]
    for name in ("MockUSD", "LeverageController", "MarginEngine", "RiskPusher"):
        assert rec["contracts"][name]["buildCodeHash"] == build_code_hash(name)
    # The keeper's RiskPusher: recorded, wired to engine and controller, a transmitter of every feed.
    assert rec["pusher"] == rec["contracts"]["RiskPusher"]["address"]
    # The lens beside the engine, and Multicall3 at its canonical address (installed by the
    # embedded Anvil), are recorded for front ends.
    assert rec["lens"] == rec["contracts"]["MarginLens"]["address"]
    assert rec["contracts"]["MarginLens"]["constructorArgs"] == [rec["engine"]]
    assert rec["multicall3"] == "0xcA11bde05977b3631167028862bE2a173976CA11"
    assert rec["contracts"]["RiskPusher"]["constructorArgs"] == [deployer, rec["controller"], rec["engine"]]
    feeds = rec["markets"][0]["feeds"]
    assert chain.at("MockAggregator", feeds["price"]["address"]).functions.isTransmitter(rec["pusher"]).call()
    # The risk inputs are the controller's report, each field behind its ReportFeed adapter.
    ctrl = chain.at("LeverageController", rec["controller"])
    assert ctrl.functions.hasRole(ctrl.functions.REPORTER_ROLE().call(), rec["pusher"]).call()
    for k in ("volatility", "funding", "depth", "skew"):
        src = chain.at("ReportFeed", feeds[k]["address"]).functions.source().call()
        assert (src[0], src[1]) == (rec["controller"], 0)
    # The engine config: the 11 fields of EngineConfig, from config/markets.toml.
    from ballast.config import load_config
    assert engine["constructorArgs"][3] == [_json_int(x) for x in load_config().engine.engine_config_tuple()]
    # Transactions were signed locally: the deployer is not an account of the node.
    assert deployer not in chain.accounts()
    assert chain.w3.eth.get_transaction_count(deployer) > 10

    # Immutables: the raw on-chain code differs from the build, the masked code does not.
    code = bytes(chain.w3.eth.get_code(engine["address"]))
    build, refs = build_runtime("MarginEngine")
    assert refs and keccak_hex(code) != keccak_hex(build)
    assert keccak_hex(mask_immutables(code, refs)) == engine["buildCodeHash"]

    # A second deployment to the same chain is refused, the record untouched.
    assert deploy_cli(base) == 2
    assert "refusing to redeploy" in capsys.readouterr().err
    assert path.read_text() == text

    # --force deploys anew and keeps the old record.
    assert deploy_cli([*base, "--force"]) == 0
    assert load_record(path)["engine"] != rec["engine"]
    assert json.loads((out / "history" / f"{CHAIN_ID}-{rec['startBlock']}.json").read_text()) == rec

    # --verify: every contract and the wiring; then tampered runtime code is caught.
    verify = ["--rpc-url", node.url, "--deployments-dir", str(out), "--verify"]
    assert deploy_cli(verify) == 0
    verified = capsys.readouterr().out
    assert "every check passed" in verified and "pusher.engine()" in verified and "pusher transmits" in verified
    assert "risk report: pusher reports" in verified
    new_engine = load_record(path)["engine"]
    code = bytearray(chain.w3.eth.get_code(new_engine))
    code[100] ^= 0xFF
    chain.rpc.call("anvil_setCode", [new_engine, "0x" + code.hex()])
    assert deploy_cli(verify) == 1
    assert "runtime code differs from the build of MarginEngine" in capsys.readouterr().out


def test_deployer_required_for_a_remote_rpc(node: Anvil, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("BALLAST_DEPLOYER_KEY", raising=False)
    monkeypatch.delenv("BALLAST_ACCOUNT", raising=False)
    assert deploy_cli(["--rpc-url", node.url, "--deployments-dir", str(tmp_path), "--yes"]) == 2
    assert "--account ID" in capsys.readouterr().err
    monkeypatch.setenv("BALLAST_DEPLOYER_KEY", "0x1234")
    assert deploy_cli(["--rpc-url", node.url, "--deployments-dir", str(tmp_path), "--yes"]) == 2
    err = capsys.readouterr().err
    assert "deployer key='<hidden>'" in err and "1234" not in err
    # Dry run with the node's unlocked account: nothing written.
    monkeypatch.delenv("BALLAST_DEPLOYER_KEY")
    assert deploy_cli(["--rpc-url", node.url, "--deployments-dir", str(tmp_path), "--unlocked", "--dry-run"]) == 0
    assert not list(tmp_path.iterdir())


def test_brownie_account_store(tmp_path: Path) -> None:
    acct = Account.create()
    path = tmp_path / "deployer.json"
    path.write_text(json.dumps(Account.encrypt(acct.key, "s3cret")))
    signer = load_brownie_account(str(path), "s3cret")
    assert signer.address == Web3.to_checksum_address(acct.address) and "s3cret" not in repr(signer)
    with pytest.raises(ValidationError, match="password"):
        load_brownie_account(str(path), "wrong")
    with pytest.raises(ValidationError, match="brownie's store"):
        load_brownie_account(str(tmp_path / "missing"), "x")
