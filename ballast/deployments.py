"""Deploy Ballast to any RPC, record it per chain id, and verify that what is on chain is the build.

``ballast deploy`` (also ``python -m ballast.deployments``):

* target: the embedded Anvil by default; ``--rpc-url URL`` (or ``BALLAST_RPC_URL``); ``--network
  NAME`` (``BALLAST_RPC_URL_<NAME>`` or brownie's network list, ``$VARS`` expanded); ``--fork
  NAME|URL`` (an embedded Anvil forking that chain: a rehearsal of the real deployment).
* deployer: ``--account ID`` (or ``BALLAST_ACCOUNT``), an encrypted account of brownie's store
  (``brownie accounts new ID``), unlocked with ``BALLAST_ACCOUNT_PASSWORD`` or a prompt; or
  ``BALLAST_DEPLOYER_KEY`` in the environment; or ``--unlocked`` (the node's first account, for a
  local node). Keys never live in a file of the repository; they are used to sign locally
  (eth_account), and never printed or written.
* output: ``deployments/<chainId>.json`` (addresses, constructor arguments, config hash, build
  code hash per contract, blocks). A deployment on a node this command started (embedded Anvil,
  fork) is written to ``out/deployments/`` instead: that chain dies with the command, and a fork
  shares the chain id of the real network. An existing file is never overwritten without
  ``--force`` (the old one is then kept under ``deployments/history/``).
* ``--verify``: compare each recorded contract's runtime code on chain with the build's
  ``deployedBytecode`` (immutable slots masked with ``immutableReferences``) and check the wiring
  (engine <-> controller <-> token, listed markets and their feeds).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence
from urllib.parse import urlsplit

from ballast.errors import BallastError, ChainError, ValidationError
from ballast.riskreport import reported_kinds
from ballast.toolchain import ROOT

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount
    from web3 import Web3
    from web3.contract import Contract

    from ballast.chain import Anvil, Chain
    from ballast.deploy import ControllerKind, Deployment

DEPLOYMENTS_DIR = ROOT / "deployments"
"""Deployments of persistent chains (testnets): committed, and published in ``abi/deployments``."""
LOCAL_DEPLOYMENTS_DIR = ROOT / "out" / "deployments"
"""Deployments on nodes started by the command itself (and local dev chains): not committed."""
LOCAL_CHAIN_IDS = frozenset({31337, 1337})
SCHEMA_VERSION = 1
RECEIPT_TIMEOUT_SEC = 600
CORE_CONTRACTS = ("MockUSD", "LeverageController", "StaticLeverageController", "MarginEngine", "RiskPusher",
                  "MarginLens")
MULTICALL3 = "0xcA11bde05977b3631167028862bE2a173976CA11"
"""Multicall3's canonical address; recorded in a deployments file when the chain has code there."""

Log = Callable[[str], None]


# ------------------------------------------------------------------------------ build artifacts


def artifact_json(name: str) -> dict[str, Any]:
    """The full forge artifact of a contract (ABI, creation and runtime code, immutable refs)."""
    from ballast.chain import ARTIFACTS_DIR, build_contracts

    path = ARTIFACTS_DIR / f"{name}.sol" / f"{name}.json"
    if not path.is_file():
        build_contracts()
    if not path.is_file():
        raise ChainError(f"artifact {path} not found after building: is {name} a contract in contracts/?")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _hex_bytes(h: str) -> bytes:
    return bytes.fromhex(h[2:] if h.startswith("0x") else h)


def mask_immutables(code: bytes, refs: dict[str, list[dict[str, int]]]) -> bytes:
    """Runtime code with every immutable slot zeroed (the compiler leaves zeros there in the build;
    the constructor writes the values into the deployed code)."""
    out = bytearray(code)
    for slots in refs.values():
        for r in slots:
            start, length = int(r["start"]), int(r["length"])
            if start + length <= len(out):
                out[start:start + length] = bytes(length)
    return bytes(out)


def keccak_hex(data: bytes) -> str:
    from web3 import Web3

    return "0x" + bytes(Web3.keccak(data)).hex()


def build_runtime(name: str) -> tuple[bytes, dict[str, list[dict[str, int]]]]:
    """The build's runtime code of ``name`` and its immutable references."""
    art = artifact_json(name)
    dep = art["deployedBytecode"]
    if dep.get("linkReferences"):
        raise ChainError(f"{name} links external libraries: not supported by verification")
    return _hex_bytes(dep["object"]), dep.get("immutableReferences") or {}


def build_code_hash(name: str) -> str:
    """keccak256 of the build's runtime code of ``name`` with immutable slots zeroed."""
    code, refs = build_runtime(name)
    return keccak_hex(mask_immutables(code, refs))


def build_info(name: str = "MarginEngine") -> dict[str, Any]:
    """Compiler version and settings of the build (from the artifact's metadata)."""
    meta = artifact_json(name).get("metadata") or {}
    settings = meta.get("settings", {})
    return {
        "solc": meta.get("compiler", {}).get("version"),
        "optimizer": settings.get("optimizer"),
        "evmVersion": settings.get("evmVersion"),
    }


# ------------------------------------------------------------------------------ signers


class Signer(Protocol):
    """Who sends the deployment's transactions."""

    @property
    def address(self) -> str: ...

    @property
    def local_key(self) -> bool: ...

    def send(self, w3: Web3, tx: dict[str, Any]) -> bytes:
        """Send a transaction (``from`` set to ``address``); returns its hash."""
        ...


@dataclass
class UnlockedSigner:
    """An account the node signs for (Anvil's dev accounts, a local node's unlocked account)."""

    address: str
    local_key: bool = False

    def send(self, w3: Web3, tx: dict[str, Any]) -> bytes:
        tx = dict(tx)
        tx.setdefault("gas", 12_000_000)
        return bytes(w3.eth.send_transaction(tx))  # type: ignore[arg-type]


@dataclass
class KeySigner:
    """A private key held in memory, signing locally with eth_account (remote RPCs)."""

    account: LocalAccount
    local_key: bool = True
    gas_margin: float = 1.25
    _nonce: int | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return str(self.account.address)

    def __repr__(self) -> str:  # never show the key
        return f"KeySigner({self.address})"

    def send(self, w3: Web3, tx: dict[str, Any]) -> bytes:
        tx = dict(tx)
        if "nonce" in tx:  # the caller read it (the keeper: the node's pending count, every round)
            self._nonce = int(tx["nonce"])
        elif self._nonce is None:
            self._nonce = int(w3.eth.get_transaction_count(self.account.address, "pending"))
        tx["nonce"] = self._nonce
        tx.setdefault("chainId", int(w3.eth.chain_id))
        if "gas" not in tx:
            tx["gas"] = int(w3.eth.estimate_gas(tx) * self.gas_margin)  # type: ignore[arg-type]
        if "gasPrice" not in tx and "maxFeePerGas" not in tx:
            base = w3.eth.get_block("latest").get("baseFeePerGas")
            if base is None:
                tx["gasPrice"] = int(w3.eth.gas_price)
            else:
                tip = int(w3.eth.max_priority_fee)
                tx["maxPriorityFeePerGas"] = tip
                tx["maxFeePerGas"] = 2 * int(base) + tip
        signed = self.account.sign_transaction(tx)
        h = bytes(w3.eth.send_raw_transaction(signed.raw_transaction))
        self._nonce += 1
        return h


def key_signer(private_key: str, what: str = "deployer key") -> KeySigner:
    """A signer from a hex private key (the key itself is never echoed in errors)."""
    from eth_account import Account

    try:
        return KeySigner(Account.from_key(private_key.strip()))
    except Exception as e:  # noqa: BLE001 - eth_account raises several types; hide the value
        raise ValidationError(what, "<hidden>", f"a 32-byte hex private key ({type(e).__name__})") from None


def load_brownie_account(account_id: str, password: str | None = None) -> KeySigner:
    """Unlock an account of brownie's encrypted store (``brownie accounts new ID``) or a keystore
    file path, with ``password`` or ``BALLAST_ACCOUNT_PASSWORD`` or a prompt."""
    from brownie import accounts

    if password is None:
        password = os.environ.get("BALLAST_ACCOUNT_PASSWORD")
    if password is None and not sys.stdin.isatty():
        raise ValidationError("BALLAST_ACCOUNT_PASSWORD", None, "set (no terminal to prompt for the password)")
    try:
        acct = accounts.load(account_id, password=password)
    except FileNotFoundError as e:
        raise ValidationError("--account", account_id, f"an account of brownie's store ({e})") from None
    except ValueError:
        raise ValidationError("--account password", "<hidden>", f"the password of {account_id!r}") from None
    return key_signer(str(getattr(acct, "private_key")))


# ------------------------------------------------------------------------------ recording chain


@dataclass
class DeployedContract:
    contract: str
    address: str
    constructor_args: list[Any]
    tx_hash: str
    block_number: int
    gas_used: int


def _wait(tx_hash: bytes, w3: Web3) -> Any:
    return w3.eth.wait_for_transaction_receipt(tx_hash, timeout=RECEIPT_TIMEOUT_SEC)  # type: ignore[arg-type]


def make_recording_chain(url: str, signer: Signer, log: Log = print) -> Chain:
    """A ``Chain`` whose deploys and transactions go through ``signer`` and are recorded in
    ``chain.deployed`` (so ``ballast.deploy.deploy`` works unchanged against a remote RPC)."""
    from web3 import Web3

    from ballast.chain import DEFAULT_GAS, Chain, load_artifact

    class RecordingChain(Chain):
        def __init__(self) -> None:
            super().__init__(url)
            self.signer = signer
            self.deployed: list[DeployedContract] = []
            self.gas_used = 0
            self.tx_count = 0
            self.last_block = 0

        def accounts(self) -> list[str]:
            return [Web3.to_checksum_address(signer.address)]

        def _send(self, tx: dict[str, Any], what: str) -> Any:
            if Web3.to_checksum_address(tx["from"]) != Web3.to_checksum_address(signer.address):
                raise ChainError(f"{what}: sender {tx['from']} is not the deployer {signer.address}")
            try:
                h = signer.send(self.w3, tx)
            except Exception as e:  # estimation reverts, underpriced, insufficient funds...
                raise ChainError(f"{what} rejected by the node: {e}") from e
            receipt = _wait(h, self.w3)
            if receipt["status"] != 1:
                raise ChainError(f"{what} reverted (tx 0x{h.hex()})")
            self.gas_used += int(receipt["gasUsed"])
            self.tx_count += 1
            self.last_block = max(self.last_block, int(receipt["blockNumber"]))
            return receipt

        def deploy(self, name: str, *args: Any, sender: str) -> Contract:
            art = load_artifact(name)
            factory = self.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
            data = factory.constructor(*args).data_in_transaction
            tx: dict[str, Any] = {"from": sender, "data": data}
            if not signer.local_key:
                tx["gas"] = 12_000_000
            receipt = self._send(tx, f"deploying {name}")
            addr = Web3.to_checksum_address(receipt["contractAddress"])
            self.deployed.append(DeployedContract(name, addr, [_jsonable(a) for a in args],
                                                  "0x" + bytes(receipt["transactionHash"]).hex(),
                                                  int(receipt["blockNumber"]), int(receipt["gasUsed"])))
            log(f"  {name:26} {addr}  gas {int(receipt['gasUsed']):>9,}")
            return self.w3.eth.contract(address=addr, abi=art["abi"])

        def transact(self, fn: Any, sender: str, gas: int = DEFAULT_GAS) -> Any:
            tx: dict[str, Any] = {"from": sender, "to": fn.address, "data": fn._encode_transaction_data()}
            if not signer.local_key:
                tx["gas"] = gas
            return self._send(tx, f"{fn.fn_name}")

    return RecordingChain()


def _jsonable(v: Any) -> Any:
    """Constructor arguments as JSON: tuples as lists, integers beyond 2^53 as decimal strings
    (JavaScript numbers would round them)."""
    if isinstance(v, bool):
        return v
    if isinstance(v, int):
        return v if abs(v) <= 2**53 - 1 else str(v)
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, bytes):
        return "0x" + v.hex()
    return v


# ------------------------------------------------------------------------------ records


def deployment_path(chain_id: int, directory: Path = DEPLOYMENTS_DIR) -> Path:
    return directory / f"{chain_id}.json"


def load_record(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise ChainError(f"no deployment recorded at {path}") from None
    except json.JSONDecodeError as e:
        raise ChainError(f"{path} is not valid JSON: {e}") from None
    if data.get("schema") != SCHEMA_VERSION:
        raise ChainError(f"{path}: schema {data.get('schema')!r} is not {SCHEMA_VERSION}")
    return data


def file_sha256(path: Path) -> str:
    return "0x" + hashlib.sha256(path.read_bytes()).hexdigest()


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def _entry(d: DeployedContract, w3: Web3) -> dict[str, Any]:
    code = bytes(w3.eth.get_code(d.address))  # type: ignore[arg-type]
    return {
        "contract": d.contract,
        "address": d.address,
        "constructorArgs": d.constructor_args,
        "txHash": d.tx_hash,
        "blockNumber": d.block_number,
        "gasUsed": d.gas_used,
        "buildCodeHash": build_code_hash(d.contract),
        "runtimeCodeHash": keccak_hex(code),
    }


def make_record(chain: Chain, dep: Deployment, *, config_path: Path, network: str) -> dict[str, Any]:
    """The deployments file content of a deployment made through ``make_recording_chain``."""
    deployed: list[DeployedContract] = getattr(chain, "deployed")
    by_addr = {d.address: d for d in deployed}
    w3 = chain.w3
    blocks = [d.block_number for d in deployed]
    first = w3.eth.get_block(min(blocks))

    def entry(c: Contract) -> dict[str, Any]:
        return _entry(by_addr[c.address], w3)

    contracts = {"MockUSD": entry(dep.usd), _controller_name(dep): entry(dep.controller),
                 "MarginEngine": entry(dep.engine), "RiskPusher": entry(dep.pusher), "MarginLens": entry(dep.lens)}
    markets = []
    for m in dep.config.markets:
        feeds = {k: entry(c) for k, c in dep.feeds[m.id].items()}
        markets.append({"id": m.id, "symbol": m.symbol, "feedDecimals": m.feed_decimals,
                        "heartbeatSec": m.heartbeat_sec, "feeds": feeds})
    return {
        "schema": SCHEMA_VERSION,
        "project": "ballast",
        "version": _version(),
        "chainId": chain.chain_id,
        "network": network,
        "deployer": dep.admin,
        # kind, admin, usd, controller, engine, pusher (RiskPusher), feeds {"<market id>": {kind:
        # address}}: the shape of ballast.deploy.Deployment.addresses(), read by `ballast keeper
        # --deployment`.
        **dep.addresses(),
        # Multicall3 at its canonical address when the chain has it (the embedded Anvil installs
        # it), else null: viem's `multicall` needs it.
        "multicall3": MULTICALL3 if w3.eth.get_code(MULTICALL3) else None,  # type: ignore[arg-type]
        "startBlock": min(blocks),
        "endBlock": max(max(blocks), int(getattr(chain, "last_block", 0))),
        "deployedAt": dt.datetime.fromtimestamp(int(first["timestamp"]), dt.timezone.utc).isoformat(),
        "gasUsed": int(getattr(chain, "gas_used", 0)),
        "transactions": int(getattr(chain, "tx_count", 0)),
        "config": {"path": _rel(config_path), "sha256": file_sha256(config_path),
                   "markets": [m.symbol for m in dep.config.markets]},
        "build": build_info(),
        "contracts": contracts,
        "markets": markets,
    }


def _version() -> str:
    from ballast import __version__

    return __version__


def _controller_name(dep: Deployment) -> str:
    return "LeverageController" if dep.kind == "dynamic" else "StaticLeverageController"


def write_record(path: Path, record: dict[str, Any], *, force: bool, archive: bool = True) -> Path | None:
    """Write a deployments file; with ``force`` an existing one moves to ``history/`` first
    (``archive``) or is replaced. Returns the history path of the replaced file, if any."""
    path.parent.mkdir(parents=True, exist_ok=True)
    moved = None
    if path.exists() and not (force and not archive):
        if not force:
            raise ChainError(f"{_rel(path)} exists: refusing to overwrite a recorded deployment (use --force)")
        hist = path.parent / "history"
        hist.mkdir(exist_ok=True)
        old = json.loads(path.read_text())
        moved = hist / f"{path.stem}-{old.get('startBlock', 'unknown')}.json"
        shutil.move(str(path), moved)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(path)
    return moved


# ------------------------------------------------------------------------------ verification


@dataclass
class Check:
    what: str
    address: str
    ok: bool
    detail: str


def _contract_entries(record: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out = [(name, e) for name, e in record["contracts"].items()]
    for m in record.get("markets", []):
        for kind, e in m["feeds"].items():
            out.append((f"{m['symbol']} {kind} feed", e))
    return out


def verify_code(w3: Web3, label: str, entry: dict[str, Any]) -> Check:
    """Runtime code at the recorded address against the build (immutable slots masked)."""
    name, addr = entry["contract"], entry["address"]
    code = bytes(w3.eth.get_code(addr))
    if not code:
        return Check(label, addr, False, "no code at this address (wrong chain, or the chain was reset)")
    build, refs = build_runtime(name)
    got = keccak_hex(mask_immutables(code, refs))
    want = keccak_hex(mask_immutables(build, refs))
    if got == want:
        note = "" if entry.get("buildCodeHash") in (None, want) else " (the record's build hash differs: stale record)"
        return Check(label, addr, True, f"runtime code = build {name} {want[:18]}...{note}")
    if got == entry.get("buildCodeHash"):
        return Check(label, addr, False, f"deployed from an older build of {name}: the sources changed since "
                                         f"(chain {got[:18]}..., build {want[:18]}...)")
    size = f"{len(code)} bytes on chain, {len(build)} in the build"
    return Check(label, addr, False, f"runtime code differs from the build of {name} ({size})")


def verify_record(chain: Chain, record: dict[str, Any]) -> list[Check]:
    """Every recorded contract's code against the build, then the wiring between them."""
    from web3 import Web3

    w3 = chain.w3
    if int(record["chainId"]) != chain.chain_id:
        return [Check("chain id", "-", False, f"record is for chain {record['chainId']}, node is {chain.chain_id}")]
    checks = [verify_code(w3, label, e) for label, e in _contract_entries(record)]
    if not all(c.ok for c in checks):
        return checks
    addrs = {"engine": record["engine"], "controller": record["controller"], "collateral": record["usd"]}
    ctrl_name = "LeverageController" if record["kind"] == "dynamic" else "StaticLeverageController"
    engine = chain.at("MarginEngine", addrs["engine"])
    ctrl = chain.at(ctrl_name, addrs["controller"])
    def same(a: str, b: str) -> bool:
        return bool(Web3.to_checksum_address(a) == Web3.to_checksum_address(b))

    def wire(what: str, addr: str, got: str, want: str) -> None:
        checks.append(Check(what, addr, same(got, want), f"{got}" + ("" if same(got, want) else f" != {want}")))

    wire("engine.controller()", addrs["engine"], engine.functions.controller().call(), addrs["controller"])
    wire("engine.collateralToken()", addrs["engine"], engine.functions.collateralToken().call(), addrs["collateral"])
    wire("controller.engine()", addrs["controller"], ctrl.functions.engine().call(), addrs["engine"])
    sealed = bool(ctrl.functions.bootstrapSealed().call())
    checks.append(Check("controller.bootstrapSealed()", addrs["controller"], sealed,
                        "sealed: changes are timelocked" if sealed else "NOT sealed: the admin can change anything at once"))
    from ballast.config import FEED_KINDS

    pusher_addr = str(record.get("pusher") or "")
    pusher = chain.at("RiskPusher", pusher_addr) if pusher_addr else None
    if pusher is None:
        checks.append(Check("RiskPusher recorded", "-", False, "no pusher in the record (deployed before engine v2?)"))
    else:
        wire("pusher.engine()", pusher_addr, pusher.functions.engine().call(), addrs["engine"])
        wire("pusher.controller()", pusher_addr, pusher.functions.controller().call(), addrs["controller"])
    lens_addr = str(record.get("lens") or "")
    if not lens_addr:
        checks.append(Check("MarginLens recorded", "-", False, "no lens in the record (deployed before issue 13?)"))
    else:
        lens = chain.at("MarginLens", lens_addr)
        wire("lens.engine()", lens_addr, lens.functions.engine().call(), addrs["engine"])
        wire("lens.controller()", lens_addr, lens.functions.controller().call(), addrs["controller"])
    for m in record.get("markets", []):
        listed = bool(ctrl.functions.isListed(m["id"]).call())
        checks.append(Check(f"market {m['id']} ({m['symbol']}) listed", addrs["controller"], listed, str(listed)))
        reported = reported_kinds(chain, addrs["controller"], m["id"],
                                  {k: chain.at("ReportFeed", m["feeds"][k]["address"]) for k in FEED_KINDS})
        for i, k in enumerate(FEED_KINDS):
            cfg = ctrl.functions.feedConfig(m["id"], i).call()
            wire(f"market {m['id']} {k} feed", addrs["controller"], cfg[0], m["feeds"][k]["address"])
            if pusher is not None and k not in reported:
                feed_addr = m["feeds"][k]["address"]
                ok = bool(chain.at("MockAggregator", feed_addr).functions.isTransmitter(pusher_addr).call())
                checks.append(Check(f"market {m['id']} {k} feed: pusher transmits", feed_addr, ok,
                                    "isTransmitter(pusher)" if ok else "the pusher cannot transmit: keeper pushes revert"))
        if pusher is not None and reported:
            role = ctrl.functions.REPORTER_ROLE().call()
            ok = bool(ctrl.functions.hasRole(role, pusher_addr).call())
            checks.append(Check(f"market {m['id']} risk report: pusher reports", addrs["controller"], ok,
                                f"{'+'.join(sorted(reported))} from the report; hasRole(REPORTER_ROLE, pusher)" if ok
                                else "the pusher is no reporter: keeper pushes with a report revert"))
    return checks


def print_checks(checks: Sequence[Check], log: Log = print) -> bool:
    ok = all(c.ok for c in checks)
    for c in checks:
        log(f"  {'OK ' if c.ok else 'BAD'}  {c.what:32} {c.address:42}  {c.detail}")
    log(f"verification: {'every check passed' if ok else 'FAILED'} ({sum(c.ok for c in checks)}/{len(checks)})")
    return ok


# ------------------------------------------------------------------------------ targets


def redact_url(url: str) -> str:
    """Scheme and host of an RPC URL only (providers put API keys in the path or query)."""
    p = urlsplit(url)
    host = p.hostname or "?"
    port = f":{p.port}" if p.port else ""
    return f"{p.scheme}://{host}{port}"


def brownie_network_url(name: str) -> str | None:
    """The host of a live network of brownie's network list (``brownie networks list``), with
    environment variables expanded; ``None`` when brownie does not know ``name``."""
    import yaml  # type: ignore[import-untyped]

    path = Path(os.environ.get("BROWNIE_DATA_FOLDER", Path.home() / ".brownie")) / "network-config.yaml"
    if not path.is_file():
        return None
    data = yaml.safe_load(path.read_text()) or {}
    for group in data.get("live", []) or []:
        for net in group.get("networks", []) or []:
            if net.get("id") == name:
                host = str(net.get("host", ""))
                expanded = os.path.expandvars(host)
                if "$" in expanded:
                    missing = [w.strip("${}/") for w in expanded.split("/") if w.startswith("$")]
                    raise ValidationError(f"--network {name}", host, f"its variables set in the environment ({', '.join(missing)})")
                return expanded
    for net in data.get("development", []) or []:
        if net.get("id") == name:
            raise ValidationError("--network", name, "a live network: for a local chain use the default embedded "
                                  "Anvil, --fork, or --rpc-url of a running node")
    return None


def network_url(name: str) -> str:
    env = f"BALLAST_RPC_URL_{name.upper().replace('-', '_')}"
    if os.environ.get(env):
        return os.environ[env]
    url = brownie_network_url(name)
    if url is None:
        raise ValidationError("--network", name, f"a network of brownie's list (`brownie networks list`) or "
                              f"an RPC URL in the environment variable {env}")
    return url


@dataclass
class Target:
    url: str
    label: str
    node: Anvil | None = None

    @property
    def ephemeral(self) -> bool:
        return self.node is not None


def open_target(rpc_url: str | None, network: str | None, fork: str | None, port: int | None,
                log: Log = print) -> Target:
    """Resolve where to deploy and start the embedded Anvil if that is the target."""
    from ballast.chain import Anvil

    given = [x for x in (rpc_url, network, fork) if x]
    if len(given) > 1:
        raise ValidationError("target", given, "one of --rpc-url, --network, --fork")
    if rpc_url:
        return Target(rpc_url, redact_url(rpc_url))
    if network:
        return Target(network_url(network), network)
    fork_url = None
    label = "anvil (embedded)"
    if fork:
        fork_url = fork if "://" in fork else network_url(fork)
        label = f"anvil fork of {fork if '://' not in fork else redact_url(fork)}"
    node = Anvil(fork_url=fork_url, port=port)
    log(f"starting {label} on {node.url}")
    node.start(timeout_sec=120 if fork_url else 20)
    return Target(node.url, label, node)


def resolve_signer(chain: Chain, *, account: str | None, unlocked: bool, ephemeral: bool, log: Log = print,
                   key_env: str = "BALLAST_DEPLOYER_KEY", account_env: str = "BALLAST_ACCOUNT",
                   role: str = "deployer") -> Signer:
    """Who signs: brownie account (``account`` or ``$account_env``) > a hex key in ``$key_env`` > the
    node's unlocked account (``unlocked`` or ``ephemeral``). Shared by ``ballast deploy`` (the
    deployer) and ``ballast keeper`` (``BALLAST_KEEPER_ACCOUNT`` / ``BALLAST_KEEPER_KEY``)."""
    account = account or os.environ.get(account_env) or None
    key = os.environ.get(key_env) or None
    if account and key:
        log(f"note: both a brownie account and {key_env} are set; using the account")
    if account:
        signer: Signer = load_brownie_account(account)
    elif key:
        signer = key_signer(key, f"{role} key")
    elif unlocked or ephemeral:
        accts = chain.accounts()
        if not accts:
            raise ChainError(f"the node has no unlocked account: set {key_env} or --account")
        return UnlockedSigner(accts[0])
    else:
        raise ValidationError(role, None, f"--account ID (brownie's encrypted store), {key_env} in "
                              "the environment, or --unlocked for a local node's account")
    if ephemeral and chain.w3.eth.get_balance(signer.address) < 10**18:  # type: ignore[arg-type]
        chain.set_balance(signer.address, 100 * 10**18)  # our own node: fund the deployer
    return signer


def add_signer_args(p: argparse.ArgumentParser, *, role: str = "deployer", key_env: str = "BALLAST_DEPLOYER_KEY",
                    account_env: str = "BALLAST_ACCOUNT") -> None:
    """``--account`` / ``--unlocked`` (and the key in the environment), as ``resolve_signer`` reads them."""
    a = p.add_argument_group(f"{role} (never a key in a file of the repo)")
    a.add_argument("--account", default=None, help=f"brownie account id or keystore file (env {account_env}); "
                   f"password from BALLAST_ACCOUNT_PASSWORD or a prompt. Else env {key_env} (hex key).")
    a.add_argument("--unlocked", action="store_true", help="use the node's first unlocked account (local nodes)")


# ------------------------------------------------------------------------------ commands


@dataclass
class DeployResult:
    path: Path
    record: dict[str, Any]
    checks: list[Check]


def deploy_and_record(url: str, signer: Signer, *, config_path: Path | None = None, kind: ControllerKind = "dynamic",
                      seed_liquidity: bool = True, directory: Path = DEPLOYMENTS_DIR, force: bool = False,
                      archive: bool = True, network: str = "", log: Log = print) -> DeployResult:
    """Deploy the full system with ``signer``, write the deployments file, verify it.

    ``force`` deploys even when a deployment of this chain is recorded; the old record then moves
    to ``history/`` (unless not ``archive``)."""
    from ballast.config import DEFAULT_CONFIG, load_config
    from ballast.deploy import deploy

    config_path = Path(config_path or DEFAULT_CONFIG)
    cfg = load_config(config_path)
    chain = make_recording_chain(url, signer, log)
    path = deployment_path(chain.chain_id, directory)
    if path.exists() and not force:
        raise ChainError(f"{_rel(path)} exists: {describe_existing(chain, path)}; refusing to redeploy over it "
                         f"(--force deploys anew and keeps the old file under {_rel(path.parent / 'history')})")
    log(f"deploying Ballast ({kind}, {len(cfg.markets)} market(s) from {_rel(config_path)}) to chain "
        f"{chain.chain_id} [{network}] from {signer.address}")
    dep = deploy(chain, cfg, kind=kind, admin=signer.address, seed_liquidity=seed_liquidity)
    record = make_record(chain, dep, config_path=config_path, network=network)
    moved = write_record(path, record, force=force, archive=archive)
    if moved:
        log(f"previous record moved to {_rel(moved)}")
    log(f"wrote {_rel(path)} (blocks {record['startBlock']}..{record['endBlock']}, {record['transactions']} "
        f"transactions, gas {record['gasUsed']:,})")
    checks = verify_record(chain, record)
    return DeployResult(path, record, checks)


def describe_existing(chain: Chain, path: Path) -> str:
    try:
        rec = load_record(path)
        eng = rec["engine"]
        live = bool(chain.w3.eth.get_code(eng))
        return f"engine {eng} from block {rec.get('startBlock')} ({'live on chain' if live else 'no code on this node'})"
    except (ChainError, KeyError) as e:
        return f"unreadable record ({e})"


def add_deploy_args(p: argparse.ArgumentParser) -> None:
    """The ``deploy`` command's arguments (shared by ``ballast deploy`` and this module's main)."""
    t = p.add_argument_group("target (default: an embedded Anvil, stopped on exit)")
    t.add_argument("--rpc-url", default=os.environ.get("BALLAST_RPC_URL") or None,
                   help="JSON-RPC URL (env BALLAST_RPC_URL); stored without its path or query")
    t.add_argument("--network", default=None,
                   help="network name: env BALLAST_RPC_URL_<NAME>, else brownie's network list ($VARS expanded)")
    t.add_argument("--fork", default=None, metavar="NAME|URL", help="deploy on an embedded Anvil forking this network")
    t.add_argument("--port", type=int, default=None, help="port of the embedded Anvil (default: a free port)")
    t.add_argument("--keep-alive", action="store_true", help="keep the embedded Anvil running until Ctrl-C")
    add_signer_args(p)
    p.add_argument("--config", default=None, help="market configuration TOML (default config/markets.toml)")
    p.add_argument("--kind", choices=["dynamic", "static_calm", "static_conservative"], default="dynamic",
                   help="controller: the dynamic model or a static baseline")
    p.add_argument("--no-seed", action="store_true", help="do not mint and fund the vault / insurance fund")
    p.add_argument("--deployments-dir", default=None,
                   help="where <chainId>.json goes (default deployments/, or out/deployments/ for a node this "
                        "command started or a local dev chain)")
    p.add_argument("--force", action="store_true", help="deploy even if a deployment is recorded for this chain")
    p.add_argument("--verify", action="store_true",
                   help="do not deploy: verify the recorded deployment against the chain and the build")
    p.add_argument("--dry-run", action="store_true", help="resolve target, deployer and config, then stop")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation before a live deployment")


def run_deploy_args(a: argparse.Namespace, log: Log = print) -> int:
    """Run ``deploy`` from parsed arguments; returns the exit code (raises BallastError)."""
    from ballast.chain import Chain, build_contracts

    from ballast.config import DEFAULT_CONFIG, load_config

    if a.verify and not (a.rpc_url or a.network):
        raise ValidationError("--verify", True, "a chain that outlives the command: --rpc-url or --network")
    config_path = Path(a.config) if a.config else DEFAULT_CONFIG
    cfg = None if a.verify else load_config(config_path)  # validated before anything starts or is sent
    build_contracts()
    target = open_target(a.rpc_url, a.network, a.fork, a.port, log)
    if target.node is not None and threading.current_thread() is threading.main_thread():
        # `kill` (SIGTERM) must stop the embedded node too: unwind through the finally below.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        try:
            chain = Chain(target.url)
        except ChainError:
            raise ChainError(f"no node answers at {target.label}") from None
        cid = chain.chain_id
        if a.deployments_dir:
            directory = Path(a.deployments_dir)
        elif target.ephemeral or cid in LOCAL_CHAIN_IDS:
            directory = LOCAL_DEPLOYMENTS_DIR
        else:
            directory = DEPLOYMENTS_DIR
        path = deployment_path(cid, directory)
        if a.verify:
            log(f"verifying {_rel(path)} against chain {cid} [{target.label}] and the build")
            ok = print_checks(verify_record(chain, load_record(path)), log)
            return 0 if ok else 1
        assert cfg is not None
        signer = resolve_signer(chain, account=a.account, unlocked=a.unlocked, ephemeral=target.ephemeral, log=log)
        balance = chain.w3.eth.get_balance(signer.address)  # type: ignore[arg-type]
        log(f"chain {cid} [{target.label}], deployer {signer.address} "
            f"({'local key' if signer.local_key else 'unlocked on the node'}), balance {balance / 1e18:.4f} ETH")
        log(f"config {_rel(config_path)} ({file_sha256(config_path)[:18]}...): "
            f"{', '.join(m.symbol for m in cfg.markets)}; output {_rel(path)}"
            f"{' (exists)' if path.exists() else ''}")
        # A node this command started cannot hold the recorded deployment: replace its record.
        force = a.force or target.ephemeral
        if path.exists() and not force:
            raise ChainError(f"{_rel(path)} exists: {describe_existing(chain, path)}; refusing to redeploy over it "
                             f"(--force deploys anew and keeps the old file under {_rel(path.parent / 'history')})")
        if a.dry_run:
            log("dry run: nothing sent")
            return 0
        if not target.ephemeral and not a.yes and sys.stdin.isatty():
            if input(f"deploy to chain {cid} from {signer.address}? [y/N] ").strip().lower() not in ("y", "yes"):
                log("aborted")
                return 1
        res = deploy_and_record(target.url, signer, config_path=config_path, kind=a.kind,
                                seed_liquidity=not a.no_seed, directory=directory, force=force,
                                archive=not target.ephemeral, network=target.label, log=log)
        ok = print_checks(res.checks, log)
        if target.node is not None and a.keep_alive:
            addrs = res.record
            log(f"\nAnvil keeps running at {target.url} (Ctrl-C to stop). Risk page: "
                f"npm --prefix web run dev, then open\n  http://localhost:5173/?rpc={target.url}"
                f"&engine={addrs['engine']}&controller={addrs['controller']}")
            while True:
                time.sleep(3600)
        return 0 if ok else 1
    finally:
        if target.node is not None:
            target.node.stop()


def deploy_cli(argv: Sequence[str] | None = None) -> int:
    """``ballast deploy`` / ``python -m ballast.deployments``: returns the exit code."""
    p = argparse.ArgumentParser(prog="ballast deploy", description="Deploy Ballast and record it per chain id.")
    add_deploy_args(p)
    a = p.parse_args(list(argv) if argv is not None else None)
    try:
        return run_deploy_args(a)
    except BallastError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: embedded node stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(deploy_cli())

__all__ = ["Check", "KeySigner", "Signer", "UnlockedSigner", "add_deploy_args", "add_signer_args", "resolve_signer", "build_code_hash", "deploy_and_record",
           "deploy_cli", "deployment_path", "key_signer", "load_brownie_account", "load_record", "make_recording_chain",
           "mask_immutables", "run_deploy_args", "verify_record"]
