"""The live risk page (web/) end to end in headless Chromium against a local Anvil.

Deploy with the deploy script's library (``ballast.deploy.deploy``, recorded in a deployments
file the page loads), commit orders by script (web3.py) and watch the page show the order pending,
then settled by the settlement keeper at the next price round, serve ``web/dist``, and
follow the page while the price feed moves: the page's numbers must equal the chain's at the
block the page shows; its liquidation price must be where the engine turns the account
liquidatable; the crash and the liquidation (with its bad debt) must appear. Screenshots go to
``out/e2e/`` (``risk_page.png`` at the end).

Needs node (web/node_modules is installed and the page built here when missing or stale) and the
system's Chromium (Debian: ``apt-get install -y chromium``; another binary: ``BALLAST_CHROMIUM``).
"""

from __future__ import annotations

import functools
import json
import os
import queue
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from web3 import Web3
from web3.contract import Contract

from ballast.chain import Anvil, Chain, build_contracts
from ballast.deployments import UnlockedSigner, deploy_and_record
from ballast.toolchain import ROOT

pytestmark = pytest.mark.integration

WEB = ROOT / "web"
DIST = WEB / "dist"
OUT = ROOT / "out" / "e2e"
USD = 10**6
WAD = 10**18
PRICE_DECIMALS = 10**8


# ------------------------------------------------------------------------------ page build


def _newest_mtime(paths: list[Path]) -> float:
    return max((p.stat().st_mtime for p in paths if p.is_file()), default=0.0)


def ensure_page_built() -> Path:
    """``npm ci`` in web/ when node_modules is missing or older than the lock file, ``vite build``
    when dist/ is older than the page's sources or the ABI package. Idempotent."""
    npm, node = shutil.which("npm"), shutil.which("node")
    if not npm or not node:
        pytest.fail("node and npm are needed to build the risk page (web/)")
    lock = WEB / "package-lock.json"
    stamp = WEB / "node_modules" / ".package-lock.json"
    if not stamp.is_file() or stamp.stat().st_mtime < lock.stat().st_mtime:
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=WEB, check=True, timeout=300)
    sources = [WEB / "index.html", WEB / "vite.config.js", lock, *(WEB / "src").rglob("*"), *(ROOT / "abi").rglob("*.json")]
    index = DIST / "index.html"
    if not index.is_file() or index.stat().st_mtime < _newest_mtime(sources):
        subprocess.run([node, str(WEB / "node_modules" / "vite" / "bin" / "vite.js"), "build", "--logLevel", "warn"],
                       cwd=WEB, check=True, timeout=300)
    return DIST


def chromium_path() -> str:
    path = os.environ.get("BALLAST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        pytest.fail(f"Chromium not found at {path}: install Debian's package (`apt-get install -y chromium`, "
                    "done by `make install`) or set BALLAST_CHROMIUM to a Chromium binary")
    return path


# ------------------------------------------------------------------------------ static server and browser


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The built page and, under /deployments/, a folder for deployments files: (base URL, folder)."""
    root = tmp_path_factory.mktemp("site")
    shutil.copytree(ensure_page_built(), root, dirs_exist_ok=True)
    (root / "deployments").mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.html", root / "deployments"
    finally:
        server.shutdown()
        server.server_close()


class Browser:
    """The node driver web/e2e/page.test.mjs (playwright-core + system Chromium), one JSON line per
    command and reply."""

    def __init__(self, chromium: str) -> None:
        env = {**os.environ, "BALLAST_CHROMIUM": chromium}
        self.proc = subprocess.Popen(["node", str(WEB / "e2e" / "page.test.mjs")], cwd=WEB, env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        threading.Thread(target=self._pump, args=(self.proc.stdout, self._lines), daemon=True).start()
        threading.Thread(target=self._drain, daemon=True).start()
        self._id = 0
        self.version = self._reply(0, timeout=60)["browser"]

    def _pump(self, stream: Any, q: queue.Queue[str | None]) -> None:
        for line in stream:
            q.put(line)
        q.put(None)

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)

    def _reply(self, want_id: int, timeout: float) -> Any:
        while True:
            try:
                line = self._lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"browser driver silent for {timeout} s; stderr: {''.join(self._stderr)[-2000:]}") from None
            if line is None:
                raise AssertionError(f"browser driver exited: {''.join(self._stderr)[-3000:]}")
            msg = json.loads(line)
            if msg.get("id") != want_id:
                continue
            if not msg["ok"]:
                raise AssertionError(f"browser: {msg['error']}")
            return msg["result"]

    def call(self, cmd: str, timeout: float = 30, **kw: Any) -> Any:
        self._id += 1
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"id": self._id, "cmd": cmd, **kw}) + "\n")
        self.proc.stdin.flush()
        return self._reply(self._id, timeout)

    def wait_for(self, testid: str, op: str, value: Any = None, timeout_ms: int = 15000) -> dict[str, Any]:
        try:
            snap: dict[str, Any] = self.call("waitFor", timeout=timeout_ms / 1000 + 10, testid=testid, op=op,
                                             value=value, timeoutMs=timeout_ms)
        except AssertionError as e:
            OUT.mkdir(parents=True, exist_ok=True)
            self.call("screenshot", path=str(OUT / "risk_page_failure.png"))
            snap = self.call("snapshot")
            raise AssertionError(f"page: {testid} {op} {value!r} not reached ({e}); page shows "
                                 f"{snap.get(testid)}, status {snap.get('status')}") from None
        return snap

    def close(self) -> None:
        try:
            self.call("close", timeout=10)
        except AssertionError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    b = Browser(chromium_path())
    try:
        yield b
    finally:
        b.close()


# ------------------------------------------------------------------------------ chain


@dataclass
class System:
    chain: Chain
    record: dict[str, Any]
    usd: Contract
    engine: Contract
    controller: Contract
    price_feed: Contract


@pytest.fixture(scope="module")
def system(site: tuple[str, Path]) -> Iterator[System]:
    """The deploy script's library (ballast.deploy.deploy, recorded and verified) on a fresh Anvil;
    its deployments file is served next to the page."""
    build_contracts()
    with Anvil() as node:
        chain = Chain(node.url)
        res = deploy_and_record(node.url, UnlockedSigner(chain.accounts()[0]), directory=site[1], log=lambda _: None)
        assert all(c.ok for c in res.checks)
        rec = res.record
        yield System(chain, rec, chain.at("MockUSD", rec["usd"]), chain.at("MarginEngine", rec["engine"]),
                     chain.at("LeverageController", rec["controller"]),
                     chain.at("MockAggregator", rec["feeds"]["0"]["price"]))


def _deposit(chain: Chain, sys_: System, trader: str, deposit_usd: int) -> None:
    usd, engine = sys_.usd, sys_.engine
    chain.transact(usd.functions.mint(trader, deposit_usd * USD), trader)
    chain.transact(usd.functions.approve(engine.address, 2**256 - 1), trader)
    chain.transact(engine.functions.deposit(deposit_usd * USD), trader)


def _next_round(chain: Chain, sys_: System, admin: str, answer: int | None = None) -> int:
    """A new price round (a second later; the same answer unless given): the first round after a
    commit or a flag. Returns its round id."""
    chain.increase_time(1)
    if answer is None:
        answer = int(sys_.price_feed.functions.latestRoundData().call()[1])
    chain.transact(sys_.price_feed.functions.transmit(answer), admin)
    return int(sys_.price_feed.functions.latestRoundData().call()[0])


def _settle(chain: Chain, sys_: System, trader: str, admin: str, settler: str) -> dict[str, Any]:
    """Publish the next price round and settle the trader's order at it (the settlement keeper)."""
    rid = _next_round(chain, sys_, admin)
    return dict(chain.transact(sys_.engine.functions.settleOrder(trader, 0, rid), settler))


def _open(chain: Chain, sys_: System, trader: str, deposit_usd: int, size_wad: int, admin: str, settler: str) -> None:
    """Deposit, commit an order and settle it at the next price round."""
    _deposit(chain, sys_, trader, deposit_usd)
    chain.transact(sys_.engine.functions.commitOrder(0, size_wad, 0), trader)
    _settle(chain, sys_, trader, admin, settler)


def _num(snap: dict[str, Any], testid: str) -> float:
    return float(snap[testid]["value"])


def _close(a: float, b: float, rel: float = 1e-9, abs_: float = 1e-6) -> bool:
    return abs(a - b) <= max(abs_, rel * max(abs(a), abs(b)))


# ------------------------------------------------------------------------------ the test


def test_risk_page_follows_a_crash_and_a_liquidation(system: System, site: tuple[str, Path], browser: Browser) -> None:
    chain, page_url = system.chain, site[0]
    w3, engine, controller, price_feed = chain.w3, system.engine, system.controller, system.price_feed
    admin, trader, liquidator = chain.accounts()[:3]
    shorter = Web3.to_checksum_address("0x" + "5a" * 20)
    settler = Web3.to_checksum_address("0x" + "5e" * 20)  # the settlement keeper
    chain.auto_impersonate(True)
    chain.set_balance(shorter, 10 * WAD)
    chain.set_balance(settler, 10 * WAD)

    # Positions by script: a short on the other side (committed and settled), and the followed
    # account's deposit and its order for a ~8x long, committed and not yet settled.
    _open(chain, system, shorter, 20_000, -WAD // 2, admin, settler)
    _deposit(chain, system, trader, 6_000)
    commit = chain.transact(engine.functions.commitOrder(0, 1 * WAD, 0), trader)

    # The page finds engine, controller, markets and the first block in the deployments file.
    OUT.mkdir(parents=True, exist_ok=True)
    url = f"{page_url}?rpc={chain.url}&deployment=deployments/{chain.chain_id}.json&account={trader}&poll=200"
    browser.call("goto", url=url)
    # The order is pending: the page shows it, with its escrowed settlement fee and no position.
    snap = browser.wait_for("order-status-0", "eq", "pending")
    order = engine.functions.order(trader, 0).call()
    assert _num(snap, "order-what-0") == 1 and _num(snap, "order-committed-0") == order[2]
    assert order[2] == w3.eth.get_block(commit["blockNumber"])["timestamp"]
    assert _num(snap, "order-fee-0") == order[3] / USD > 0
    assert snap["acct-status"]["value"] == "no position" and "settled-row" not in snap
    browser.call("screenshot", path=str(OUT / "risk_page_order_pending.png"))

    # The settlement keeper settles it at the next price round: the page shows the settlement (its
    # round, fill price and fee) and the position, and no pending order any more.
    settled = _settle(chain, system, trader, admin, settler)
    snap = browser.wait_for("no-pending-order", "exists")
    snap = browser.wait_for("pos-size-0", "exists")
    rows = snap["settled-row"]
    assert len(rows) == 1 and int(rows[0]["block"]) == settled["blockNumber"]
    assert int(rows[0]["round"]) == system.price_feed.functions.latestRoundData().call()[0]
    assert float(rows[0]["price"]) == 50_000 and _num(snap, "pos-size-0") == 1
    head = w3.eth.block_number
    snap = browser.wait_for("block", "gte", head)
    snap = browser.wait_for("acct-equity", "exists")
    block = int(snap["block"]["value"])

    def at(fn: Any) -> Any:
        return fn.call(block_identifier=block)

    # Market numbers = chain numbers at the page's block.
    assert _num(snap, "price-0") == 50_000
    assert _num(snap, "vol-0") == pytest.approx(0.5)
    assert _close(_num(snap, "maxlev-long-0"), at(controller.functions.maxLeverageWad(0, True)) / WAD)
    assert _close(_num(snap, "maxlev-short-0"), at(controller.functions.maxLeverageWad(0, False)) / WAD)
    assert _num(snap, "maxlev-long-0") > 1
    oi_long, oi_short = at(engine.functions.openInterest(0))
    assert (_num(snap, "oi-long-0"), _num(snap, "oi-short-0")) == (oi_long / WAD, oi_short / WAD) == (1, 0.5)
    assert _num(snap, "funding-0") == 0
    ins0 = at(engine.functions.insuranceFund()) / USD
    assert _close(_num(snap, "insurance-fund"), ins0)
    assert _num(snap, "bad-debt-total") == 0
    assert snap["liq-count"]["text"] == "0"

    # Account numbers = engine.health at that block.
    eq, mm, im, notional = at(engine.functions.health(trader))
    assert _close(_num(snap, "acct-equity"), eq / WAD)
    assert _close(_num(snap, "acct-maintenance"), mm / WAD)
    assert _close(_num(snap, "acct-initial"), im / WAD)
    assert _close(_num(snap, "acct-notional"), notional / WAD)
    assert snap["acct-status"]["value"] == "healthy"
    distance = _num(snap, "acct-distance")
    liq_price = _num(snap, "pos-liqprice-0")
    assert -0.5 < distance < 0 and liq_price == pytest.approx(50_000 * (1 + distance), rel=1e-9)
    equity_before = _num(snap, "acct-equity")
    browser.call("screenshot", path=str(OUT / "risk_page_before.png"))

    # The page's liquidation price is where the engine flips: just above it the account is safe,
    # just below it is liquidatable (funding is zero, maintenance fractions do not move with price).
    chain.transact(price_feed.functions.transmit(round(liq_price * 1.001 * PRICE_DECIMALS)), admin)
    assert not engine.functions.isLiquidatable(trader).call()
    snap = browser.wait_for("block", "gte", w3.eth.block_number)
    assert 0 > _num(snap, "acct-distance") > -0.002
    assert snap["acct-status"]["value"] == "below initial margin"  # not yet liquidatable
    chain.transact(price_feed.functions.transmit(round(liq_price * 0.999 * PRICE_DECIMALS)), admin)
    assert engine.functions.isLiquidatable(trader).call()
    snap = browser.wait_for("acct-status", "eq", "LIQUIDATABLE")
    assert _num(snap, "acct-distance") == 0

    # Crash: -16%. The page shows the new price and the account under water.
    chain.transact(price_feed.functions.transmit(42_000 * PRICE_DECIMALS), admin)
    snap = browser.wait_for("price-0", "eq", "42000")
    assert _num(snap, "acct-equity") < 0 < equity_before
    assert _close(_num(snap, "acct-equity"), engine.functions.health(trader).call()[0] / WAD)

    # Liquidation, in two steps: flagged, then liquidated at the next price round (the crash price
    # again). The row appears with the account, the crash price and the bad debt; the insurance fund
    # pays it and the long open interest is gone.
    assert engine.functions.liquidationMarket(trader).call() == 0
    chain.transact(engine.functions.flagLiquidation(trader), liquidator)
    _next_round(chain, system, admin, 42_000 * PRICE_DECIMALS)
    receipt = chain.transact(engine.functions.liquidate(trader, 0), liquidator)
    snap = browser.wait_for("liq-count", "textIncludes", "1")
    rows = snap["liq-row"]
    assert len(rows) == 1
    row = rows[0]
    assert Web3.to_checksum_address(row["account"]) == trader and row["market"] == "0"
    assert int(row["block"]) == receipt["blockNumber"] and float(row["price"]) == 42_000
    bad_debt = engine.functions.badDebtTotal().call() / USD
    assert bad_debt > 0 and float(row["badDebt"]) == pytest.approx(bad_debt)
    snap = browser.wait_for("block", "gte", receipt["blockNumber"])
    assert _close(_num(snap, "bad-debt-total"), bad_debt)
    assert _close(_num(snap, "insurance-fund"), engine.functions.insuranceFund().call() / USD)
    assert _num(snap, "oi-long-0") == 0 and _num(snap, "oi-short-0") == 0.5
    assert snap["acct-status"]["value"] == "no position" and _num(snap, "acct-equity") == 0

    browser.call("screenshot", path=str(OUT / "risk_page.png"))
    assert (OUT / "risk_page.png").stat().st_size > 10_000

    # Without a deployments file: addresses from the URL, markets from the controller's
    # MarketListed logs, the symbol from the price feed's description.
    browser.call("goto", url=f"{page_url}?rpc={chain.url}&engine={engine.address}&poll=200")
    snap = browser.wait_for("liq-count", "textIncludes", "1")
    row = snap["liq-row"][0]
    assert _num(snap, "price-0") == 42_000 and (row["symbol"], int(row["block"])) == ("BTC", receipt["blockNumber"])
    errors = browser.call("errors")
    assert not errors, errors
