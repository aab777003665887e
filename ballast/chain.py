"""Chain layer on web3.py (no brownie): an embedded Anvil, compiled artifacts, deployments.

Everything the stress lab, the keeper and the tests do on chain goes through here, so that the
library does not depend on brownie.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Iterable, Sequence

import requests
from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from web3 import HTTPProvider, Web3
from web3.contract import Contract

from ballast.errors import ChainError
from ballast.toolchain import ROOT, native_binary

ARTIFACTS_DIR = ROOT / "build" / "forge"
FORGE_CACHE = ROOT / "build" / "forge-cache"
DEFAULT_GAS = 3_000_000


# ------------------------------------------------------------------------------ artifacts


def build_contracts(root: Path = ROOT, quiet: bool = True) -> Path:
    """Compile ``contracts/`` (not the tests) with the native forge; cached by forge. Returns the
    artifacts folder."""
    forge = native_binary("forge", root)
    # Only contracts/ and what it imports: test helpers under tests/forge (not all of them .t.sol)
    # must not break the library's build.
    cmd = [str(forge), "build", str(root / "contracts"), "--skip", "test", "--skip", "script", "--out",
           str(ARTIFACTS_DIR), "--cache-path", str(FORGE_CACHE)]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ChainError(f"forge build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    if not quiet:
        print(proc.stdout.strip())
    return ARTIFACTS_DIR


def load_artifact(name: str, artifacts: Path = ARTIFACTS_DIR) -> dict[str, Any]:
    """ABI and creation bytecode of a contract compiled by ``build_contracts``."""
    path = artifacts / f"{name}.sol" / f"{name}.json"
    if not path.is_file():
        build_contracts()
    if not path.is_file():
        raise ChainError(f"artifact {path} not found after building: is {name} a contract in contracts/?")
    data = json.loads(path.read_text())
    return {"abi": data["abi"], "bytecode": data["bytecode"]["object"]}


# ------------------------------------------------------------------------------ anvil


def free_port() -> int:
    """A TCP port free on localhost now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


DEV_ACCOUNTS = 10
"""Funded dev accounts of the embedded Anvil (Anvil's default mnemonic, 1,000,000 ETH each)."""


class Anvil:
    """An Anvil node on a free local port, stopped on exit, error or Ctrl-C.

    It has ``DEV_ACCOUNTS`` funded, unlocked dev accounts (``accounts`` to change) and Multicall3 at
    its canonical address
    (``ballast.multicall3``; installed when the chain has no code there, e.g. not on a fork that
    already has it).

    Parameters
    ----------
    fork_url
        Fork this RPC instead of starting an empty chain.
    extra_args
        More anvil arguments.
    accounts
        Number of funded dev accounts.
    multicall3
        Install Multicall3 at its canonical address.
    """

    def __init__(self, *, fork_url: str | None = None, extra_args: Sequence[str] = (), port: int | None = None,
                 timestamp: int | None = None, accounts: int = DEV_ACCOUNTS, multicall3: bool = True) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.multicall3 = multicall3
        self._args = [str(native_binary("anvil")), "--port", str(self.port), "--silent", "--accounts", str(accounts),
                      "--balance", "1000000", "--disable-block-gas-limit",
                      "--hardfork", "cancun"]
        if timestamp is not None:
            self._args += ["--timestamp", str(timestamp)]
        if fork_url:
            self._args += ["--fork-url", fork_url]
        self._args += list(extra_args)
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_sec: float = 20.0) -> Anvil:
        self._proc = subprocess.Popen(self._args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      start_new_session=True)
        deadline = time.monotonic() + timeout_sec
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode() if self._proc.stderr else ""
                raise ChainError(f"anvil exited with {self._proc.returncode}: {err[-2000:]}")
            try:
                r = requests.post(self.url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
                                  timeout=1)
                if r.ok:
                    if self.multicall3:
                        self._install_multicall3()
                    return self
            except requests.RequestException:
                time.sleep(0.05)
        self.stop()
        raise ChainError(f"anvil did not answer on {self.url} within {timeout_sec} s")

    def _install_multicall3(self) -> None:
        from ballast import multicall3

        rpc = Rpc(self.url)
        if rpc.call("eth_getCode", [multicall3.ADDRESS, "latest"]) in ("0x", "0x0", None):
            rpc.call("anvil_setCode", [multicall3.ADDRESS, multicall3.RUNTIME_HEX])

    def stop(self) -> None:
        p = self._proc
        if p is None:
            return
        self._proc = None
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if p.stderr:
            p.stderr.close()

    def __enter__(self) -> Anvil:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


# ------------------------------------------------------------------------------ RPC


class Rpc:
    """A minimal JSON-RPC client with batching, for throughput where web3.py adds overhead.

    Retries a request that fails at the transport level (``retries`` times) and raises
    ``ChainError`` with the method and the node's message when the node answers with an error.
    """

    def __init__(self, url: str, *, retries: int = 3, timeout_sec: float = 60.0, drop_rate: float = 0.0,
                 seed: int = 0) -> None:
        if not 0.0 <= drop_rate < 1.0:
            raise ChainError(f"drop_rate={drop_rate} is invalid: allowed [0, 1)")
        self.url = url
        self.retries = retries if drop_rate == 0 else max(retries, 8)
        self.timeout_sec = timeout_sec
        self.drop_rate = drop_rate
        """Fault injection for tests: this share of requests is lost, half before reaching the node
        and half after (the response is dropped); both are retried."""
        self.dropped = 0
        import random

        self._rng = random.Random(seed)
        self._session = requests.Session()
        self._session.trust_env = False  # no proxy lookups per request: the node is local
        self._id = 0

    def _post(self, payload: Any) -> Any:
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            try:
                fault = self._rng.random() < self.drop_rate
                if fault and self._rng.random() < 0.5:
                    self.dropped += 1
                    raise requests.ConnectionError("injected: request dropped before the node")
                r = self._session.post(self.url, json=payload, timeout=self.timeout_sec)
                r.raise_for_status()
                if fault:
                    self.dropped += 1
                    raise requests.ConnectionError("injected: response dropped after the node")
                return r.json()
            except (requests.ConnectionError, requests.Timeout, requests.HTTPError) as e:
                last = e
                time.sleep(0.05 * (attempt + 1))
        raise ChainError(f"RPC {self.url} unreachable after {self.retries + 1} attempts: {last}")

    def call(self, method: str, params: list[Any] | None = None) -> Any:
        self._id += 1
        out = self._post({"jsonrpc": "2.0", "id": self._id, "method": method, "params": params or []})
        if "error" in out:
            raise ChainError(f"{method} failed: {out['error']}")
        return out["result"]

    MAX_BATCH = 500
    """Requests per HTTP post: larger batches are split (nodes cap a request's size; Anvil at ~2 MB)."""

    def batch(self, calls: Iterable[tuple[str, list[Any]]]) -> list[Any]:
        """Send many requests in HTTP round trips of at most ``MAX_BATCH``; results (or error dicts) in
        order. Raises ``ChainError`` when the node rejects a batch as a whole."""
        reqs = []
        for method, params in calls:
            self._id += 1
            reqs.append({"jsonrpc": "2.0", "id": self._id, "method": method, "params": params})
        results: list[Any] = []
        for i in range(0, len(reqs), self.MAX_BATCH):
            chunk = reqs[i:i + self.MAX_BATCH]
            out = self._post(chunk)
            if not isinstance(out, list):  # the node rejected the whole batch (size limit, parse error)
                raise ChainError(f"batch of {len(chunk)} requests rejected by {self.url}: {out.get('error', out)}")
            by_id = {o.get("id"): o for o in out}
            for r in chunk:
                o = by_id.get(r["id"])
                if o is None:
                    raise ChainError(f"{r['method']}: no answer for request id {r['id']} in the batch")
                results.append(o.get("result", {"error": o.get("error")}))
        return results


# ------------------------------------------------------------------------------ contracts


@dataclass
class Chain:
    """A web3 connection plus the batching RPC client, with helpers for Anvil cheat codes."""

    url: str
    w3: Web3 = field(init=False)
    rpc: Rpc = field(init=False)

    def __post_init__(self) -> None:
        self.w3 = Web3(HTTPProvider(self.url, request_kwargs={"timeout": 120}))
        self.rpc = Rpc(self.url)
        if not self.w3.is_connected():
            raise ChainError(f"no node answers at {self.url}")

    @property
    def chain_id(self) -> int:
        return int(self.w3.eth.chain_id)

    def accounts(self) -> list[str]:
        return [Web3.to_checksum_address(a) for a in self.w3.eth.accounts]

    def deploy(self, name: str, *args: Any, sender: str) -> Contract:
        art = load_artifact(name)
        factory = self.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
        tx_hash = factory.constructor(*args).transact({"from": sender, "gas": 12_000_000})
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash)
        if receipt["status"] != 1:
            raise ChainError(f"deploying {name} reverted (tx {tx_hash.hex()})")
        address = receipt["contractAddress"]
        if address is None:
            raise ChainError(f"deploying {name} returned no contract address (tx {tx_hash.hex()})")
        return self.w3.eth.contract(address=address, abi=art["abi"])

    def at(self, name: str, address: str) -> Contract:
        return self.w3.eth.contract(address=Web3.to_checksum_address(address), abi=load_artifact(name)["abi"])

    def transact(self, fn: Any, sender: str, gas: int = DEFAULT_GAS) -> Any:
        """Send a contract call and wait; raise ChainError with the decoded revert on failure."""
        try:
            tx_hash = fn.transact({"from": sender, "gas": gas})
        except Exception as e:  # web3 raises ContractLogicError etc. on estimation/eth_call
            raise ChainError(f"{fn.fn_name} from {sender} rejected: {e}") from e
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash)
        if receipt["status"] != 1:
            raise ChainError(f"{fn.fn_name} from {sender} reverted (tx {tx_hash.hex()})")
        return receipt

    # Anvil cheats -----------------------------------------------------------------
    def set_automine(self, on: bool) -> None:
        self.rpc.call("evm_setAutomine", [on])

    def mine(self, timestamp: int | None = None) -> None:
        self.rpc.call("evm_mine", [timestamp] if timestamp is not None else [])

    def set_next_timestamp(self, ts: int) -> None:
        self.rpc.call("evm_setNextBlockTimestamp", [ts])

    def increase_time(self, seconds: int) -> None:
        self.rpc.call("evm_increaseTime", [seconds])

    def auto_impersonate(self, on: bool = True) -> None:
        self.rpc.call("anvil_autoImpersonateAccount", [on])

    def set_balance(self, address: str, wei: int) -> None:
        self.rpc.call("anvil_setBalance", [address, hex(wei)])

    def latest_timestamp(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])


def _abi_type(arg: dict[str, Any]) -> str:
    t = str(arg["type"])
    if t.startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in arg["components"])
        return f"({inner}){t[5:]}"
    return t


class Encoder:
    """Fast calldata encoding for one contract: selectors and argument types computed once.

    web3's ``encode_abi`` re-validates the whole ABI (hashing every signature) on each call, which
    dominates a stress run; this does the same encoding with ``eth_abi`` directly.
    """

    def __init__(self, abi: Sequence[Any]) -> None:
        self._fns: dict[str, tuple[bytes, list[str]]] = {}
        for item in abi:
            if item.get("type") != "function":
                continue
            types = [_abi_type(i) for i in item["inputs"]]
            sel = Web3.keccak(text=f"{item['name']}({','.join(types)})")[:4]
            self._fns.setdefault(item["name"], (bytes(sel), types))

    def __call__(self, fn: str, args: Sequence[Any] = ()) -> str:
        sel, types = self._fns[fn]
        return "0x" + (sel + abi_encode(types, list(args))).hex()


def decode_revert(data: str | bytes) -> str:
    """Best-effort name of a custom error from revert data (selector and raw arguments)."""
    raw = bytes.fromhex(data[2:]) if isinstance(data, str) else data
    if len(raw) < 4:
        return "revert without data"
    return f"0x{raw[:4].hex()}({raw[4:].hex()})"


__all__ = ["DEV_ACCOUNTS", "Anvil", "Chain", "Encoder", "Rpc", "build_contracts", "load_artifact", "free_port", "decode_revert", "abi_decode"]
