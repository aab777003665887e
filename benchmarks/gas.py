"""Gas of every user, keeper and admin entry point, dynamic engine against the static baseline.

Everything runs on one embedded Anvil (``--steps-tracing`` so that transactions can be traced) with
four deployments: the dynamic controller (``LeverageController``) and the static baseline
(``StaticLeverageController`` with the ``static_calm`` fractions), each with one market and with
three markets (ids 0, 1, 2). Gas is the ``gasUsed`` of the web3.py receipt (after refunds: what a
user pays).

Accounts
--------
fresh
    An address that never touched the engine: its first deposit, its first position in the market,
    and, for liquidations, a victim opened just before and a liquidator with no engine account
    (the reward credit creates it).
warm
    An account with history: deposited before, opened and closed a position in the market before;
    for liquidations, a liquidator whose engine account already holds earlier rewards (rewards are
    credited in the engine, not transferred).
3 markets (cross-margin)
    The account also holds positions in the two other markets while it trades (or is liquidated in)
    market 0, so every health check prices three positions.

Engine v2 (issue 10): a trade is an order, committed (``commitOrder``/``commitClose``: escrows the
settlement fee) and settled later by a keeper (``settleOrder``: executes the trade at the first
price round published after the commit); the rows open/increase/reduce/close are the settlement
(where the trade executes), ``commit`` and ``commit_close`` the commit. A liquidation is flagged
(``flagLiquidation``) and then settled (``liquidate``) at the first round after the flag. Between
commit (or flag) and settlement the benchmark publishes one price round (the same answer again).
The keeper's ``RiskPusher.push`` (feed answers, then the market's poke and funding accrual, in one
transaction) is measured with the price only and with all five feeds.

Attribution: the settlement of the open and the liquidation are traced (``debug_traceTransaction``, struct logs with
the stack plus the call tracer), and their gas is split into calldata, controller quotes (and,
inside them, the feed reads and the open-interest callback), token transfers, storage writes and
reads, events and the rest.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from web3 import Web3

from ballast.chain import Anvil, Chain, build_contracts
from ballast.config import FEED_KINDS, Config, load_config
from ballast.deploy import Deployment, deploy
from ballast.errors import ChainError
from ballast.riskreport import pusher_args

WAD = 10**18
TOKEN = 10**6
TARGETS = {"order": 200_000, "liquidate": 150_000, "report_update": 60_000, "dynamic_over_static": 1.15}
"""Issue 14: an order's whole cost (commitOrder + settleOrder), a liquidation, a risk report update
(all four fields), and dynamic / static on the same entry points."""
SYNTHETIX_V3 = {"commitOrder": 322_000, "settleOrder": 731_000, "liquidatePosition": 346_000}
"""Synthetix v3 perps market, PR #2147: average gas of 200 calls."""
COLUMNS = ("1m_fresh", "1m_warm", "3m_fresh", "3m_warm")
COLUMN_TITLES = {"1m_fresh": "1 mkt fresh", "1m_warm": "1 mkt warm", "3m_fresh": "3 mkt fresh",
                 "3m_warm": "3 mkt warm"}
ROWS = (
    ("deposit", "deposit"),
    ("withdraw_no_position", "withdraw (no position)"),
    ("withdraw", "withdraw (with positions)"),
    ("commit", "commitOrder (open)"),
    ("open", "settleOrder: open"),
    ("increase", "settleOrder: increase"),
    ("reduce", "settleOrder: reduce"),
    ("commit_close", "commitClose"),
    ("close", "settleOrder: close"),
    ("flag", "flagLiquidation"),
    ("liquidate_partial", "liquidate (partial)"),
    ("liquidate_full", "liquidate (full, bad debt)"),
    ("transmit_price", "feed update: price"),
    ("report_one", "risk report: 1 field"),
    ("report_all", "risk report: 4 fields"),
    ("push_price", "RiskPusher.push: price"),
    ("push_all", "RiskPusher.push: price + report"),
    ("poke_noop", "poke (no change)"),
    ("poke_tighten", "poke (tightening scheduled)"),
    ("poke_loosen", "poke (loosening)"),
    ("propose_params", "proposeParams (timelocked)"),
    ("execute_params", "executeParams"),
    ("cancel_params", "cancelParams"),
)
T_LIQUIDATED = Web3.keccak(text="Liquidated(address,uint256,address,int256,uint256,uint256,uint256,uint256)")
CALL_OPS = ("CALL", "STATICCALL", "DELEGATECALL", "CALLCODE")


def n_market_config(cfg: Config, n: int) -> Config:
    """``cfg``'s first market listed ``n`` times, ids 0..n-1 (same feeds' shape and parameters)."""
    m = cfg.markets[0]
    return replace(cfg, markets=tuple(replace(m, id=i, symbol=f"{m.symbol}{i}" if i else m.symbol) for i in range(n)))


def three_market_config(cfg: Config) -> Config:
    """``cfg``'s first market listed three times, ids 0, 1, 2 (same feeds' shape and parameters)."""
    return n_market_config(cfg, 3)


CURVE_MARKETS = 8
"""The cross-margin curve runs to the engine's MAX_POSITIONS (open positions per account)."""
CURVE_ROWS = ("withdraw", "increase")


def _hex(h: Any) -> str:
    s = h.hex() if isinstance(h, (bytes, bytearray)) else str(h)
    return s if s.startswith("0x") else "0x" + s


# ------------------------------------------------------------------------------ one system


@dataclass
class System:
    """One deployment on the shared chain, with helpers to fund accounts and send measured calls."""

    chain: Chain
    config: Config
    kind: str
    dep: Deployment = field(init=False)
    traces: dict[str, str] = field(default_factory=dict)
    trace_results: dict[str, dict[str, Any]] = field(default_factory=dict)
    _n: int = 0

    def __post_init__(self) -> None:
        self.dep = deploy(self.chain, self.config, kind=self.kind)  # type: ignore[arg-type]
        self.e = self.dep.engine
        self.admin = self.dep.admin
        self.settler = self.new_account(usd=10.0)  # a settlement keeper that already holds tokens

    @property
    def markets(self) -> int:
        return len(self.config.markets)

    def new_account(self, usd: float = 1_000_000.0) -> str:
        """A funded, approved address (impersonated) that never touched the engine."""
        self._n += 1
        tag = {"dynamic": 0xD1, "static_calm": 0x5C}.get(self.kind, 0xEE)
        a = Web3.to_checksum_address(f"0x{0xBE4C << 144 | tag << 128 | self.markets << 64 | self._n:040x}")
        self.chain.set_balance(a, 10**24)
        if usd:
            self.send(self.dep.usd.functions.mint(a, int(usd * TOKEN)), a)
            self.send(self.dep.usd.functions.approve(self.e.address, 2**256 - 1), a)
        return a

    def send(self, fn: Any, sender: str) -> dict[str, Any]:
        r: dict[str, Any] = dict(self.chain.transact(fn, sender))
        return r

    def gas(self, fn: Any, sender: str, trace_as: str | None = None) -> int:
        r = self.send(fn, sender)
        if trace_as:
            self.traces[trace_as] = _hex(r["transactionHash"])
        return int(r["gasUsed"])

    def snapshot(self) -> str:
        return str(self.chain.rpc.call("evm_snapshot"))

    def revert(self, snap: str) -> None:
        if not self.chain.rpc.call("evm_revert", [snap]):
            raise ChainError(f"evm_revert {snap} failed")

    def price(self, mid: int) -> int:
        return int(self.dep.controller.functions.priceWad(mid).call())

    def size_for(self, mid: int, collateral_usd: float, leverage: float) -> int:
        return int(collateral_usd * leverage * WAD * WAD // self.price(mid))

    def max_leverage(self, mid: int) -> float:
        return float(self.dep.controller.functions.maxLeverageWad(mid, True).call()) / WAD

    def set_feed(self, mid: int, kind: str, value: float) -> int:
        """Publish one input as the admin: the price to its aggregator, a risk input as a report of
        that field alone. Gas of the transaction."""
        return self.report(mid, {kind: value})

    def report(self, mid: int, values: dict[str, float]) -> int:
        m = self.config.market(mid)
        calls = self.dep.feed_calls(mid, {k: m.feed_answer(k, v) for k, v in values.items()})
        if len(calls) != 1:
            raise ValueError(f"one transaction per call: the price or risk inputs, not both ({sorted(values)})")
        return self.gas(calls[0], self.admin)

    def feed_value(self, mid: int, kind: str) -> float:
        m = self.config.market(mid)
        answer = int(self.dep.feeds[mid][kind].functions.latestRoundData().call()[1])
        return float(answer / 10**m.feed_decimals)

    def publish_price(self, mid: int) -> None:
        """A new price round (the same answer): the first round after a commit or a flag."""
        f = self.dep.feeds[mid]["price"]
        self.send(f.functions.transmit(int(f.functions.latestRoundData().call()[1])), self.admin)

    def settle(self, a: str, mid: int, trace_as: str | None = None) -> int:
        """Publish the round after the commit, then settle at it (by the settlement keeper)."""
        self.publish_price(mid)
        rid = int(self.dep.feeds[mid]["price"].functions.latestRoundData().call()[0])
        return self.gas(self.e.functions.settleOrder(a, mid, rid), self.settler, trace_as)

    def order(self, a: str, mid: int, delta: int, trace_as: str | None = None) -> tuple[int, int]:
        """commitOrder then settleOrder: (commit gas, settle gas)."""
        return self.gas(self.e.functions.commitOrder(mid, delta, 0), a), self.settle(a, mid, trace_as)

    def trade(self, a: str, mid: int, delta: int, trace_as: str | None = None) -> int:
        """An executed trade (commit and settle); returns the settlement's gas."""
        return self.order(a, mid, delta, trace_as)[1]

    def close(self, a: str, mid: int) -> tuple[int, int]:
        """commitClose then settleOrder: (commit gas, settle gas)."""
        return self.gas(self.e.functions.commitClose(mid, 0), a), self.settle(a, mid)

    def flag_and_liquidate(self, v: str, liq: str) -> tuple[int, dict[str, Any], int]:
        """flagLiquidation, the next price round of the market the engine prefers
        (``liquidationMarket``), liquidate there: (flag gas, liquidation receipt, market)."""
        g = self.gas(self.e.functions.flagLiquidation(v), liq)
        mid = int(self.e.functions.liquidationMarket(v).call())
        self.publish_price(mid)
        return g, self.send(self.e.functions.liquidate(v, mid), liq), mid


# ------------------------------------------------------------------------------ measurements


def _cross_positions(s: System, a: str) -> None:
    """Small longs in every market but 0 (cross-margin columns)."""
    for mid in range(1, s.markets):
        s.trade(a, mid, s.size_for(mid, 2_000.0, 2.0))


def _trading(s: System, col: str, out: dict[str, dict[str, int]]) -> None:
    """deposit, withdraw, open, increase, reduce, close for one account kind."""
    warm = col.endswith("warm")
    a = s.new_account()
    if warm:  # history: deposits, a position opened and closed in every market
        s.send(s.e.functions.deposit(5_000 * TOKEN), a)
        for mid in range(s.markets):
            s.trade(a, mid, s.size_for(mid, 5_000.0, 2.0))
            s.close(a, mid)
        if s.markets > 1:
            _cross_positions(s, a)
    out["deposit"][col] = s.gas(s.e.functions.deposit(10_000 * TOKEN), a)
    if s.markets == 1 or not warm:
        out["withdraw_no_position"][col] = s.gas(s.e.functions.withdraw(100 * TOKEN), a)
    if s.markets > 1 and not warm:
        _cross_positions(s, a)
    size = s.size_for(0, 10_000.0, 5.0)
    out["commit"][col], out["open"][col] = s.order(a, 0, size, trace_as=f"open_{col}")
    out["increase"][col] = s.trade(a, 0, size // 5)
    out["reduce"][col] = s.trade(a, 0, -(size * 3 // 10))
    out["withdraw"][col] = s.gas(s.e.functions.withdraw(100 * TOKEN), a)
    out["commit_close"][col], out["close"][col] = s.close(a, 0)


def _liquidation(s: System, col: str, out: dict[str, dict[str, int]], notes: list[str], commit: bool = False) -> None:
    """Partial and full liquidation of a long opened near the live maximum leverage, after a price
    drop just past the maintenance line (partial) and past the collateral (full, with bad debt).

    Each attempt runs in a snapshot that is reverted (after tracing). ``commit``: keep one full
    liquidation with bad debt instead, then restore the price (warms the bad-debt counters up)."""
    warm = col.endswith("warm")
    liq = s.new_account(usd=1_000.0 if warm else 0.0)
    if warm:  # a warm liquidator's engine account holds earlier rewards (as a deposit here)
        s.send(s.e.functions.deposit(100 * TOKEN), liq)
    v = s.new_account()
    if warm:
        s.send(s.e.functions.deposit(5_000 * TOKEN), v)
        s.trade(v, 0, s.size_for(0, 5_000.0, 2.0))
        s.close(v, 0)
    else:
        s.send(s.e.functions.deposit(5_000 * TOKEN), v)
    if s.markets > 1:
        _cross_positions(s, v)
    size = s.size_for(0, 5_000.0, 0.9 * s.max_leverage(0))
    s.trade(v, 0, size)
    p0 = s.feed_value(0, "price")

    def liquidatable(drop: float) -> bool:
        snap = s.snapshot()
        try:
            s.set_feed(0, "price", p0 * (1 - drop))
            return bool(s.e.functions.isLiquidatable(v).call())
        finally:
            s.revert(snap)

    lo, hi = 0.0, 0.5
    if not liquidatable(hi):
        notes.append(f"{s.kind} {col}: no liquidation within a 50% drop")
        return
    for _ in range(12):
        mid_ = (lo + hi) / 2
        lo, hi = (lo, mid_) if liquidatable(mid_) else (mid_, hi)
    threshold = hi

    attempts = (("partial", [threshold * 1.0005 + 1e-5, threshold + 0.001, threshold + 0.003]),
                ("full", [threshold + 0.02, threshold + 0.05, threshold + 0.1, threshold + 0.2]))
    for kind_, drops in attempts[1:] if commit else attempts:
        for d in drops:
            snap = s.snapshot()
            keep = False
            try:
                s.set_feed(0, "price", p0 * (1 - d))
                flag_gas, r, liq_mid = s.flag_and_liquidate(v, liq)
                note = f"{s.kind} {col}: the engine's preferred market for the liquidation was {liq_mid}"
                if liq_mid != 0 and note not in notes:
                    notes.append(note)
                full = int(s.e.functions.position(v, liq_mid).call()[0]) == 0  # the whole position closed
                if full == (kind_ == "full"):
                    keep = commit
                    if not commit:
                        out[f"liquidate_{kind_}"][col] = int(r["gasUsed"])
                        out["flag"][col] = max(out["flag"].get(col, 0), flag_gas)
                        tag = f"liquidate_{kind_}_{col}"
                        if tag in TRACED:
                            s.trace_results[tag] = trace_tx(s, _hex(r["transactionHash"]))
                    break
            finally:
                if keep:
                    s.set_feed(0, "price", p0)
                else:
                    s.revert(snap)
        else:
            notes.append(f"{s.kind} {col}: no {kind_} liquidation found near a {threshold:.2%} drop")


def _seed_open_interest(s: System) -> None:
    """Open interest in every market before anything is measured: the first trade of a market pays
    for creating its state, which is not what a user's trade costs (a market maker, 10,000 USD at 2x
    in each)."""
    mm = s.new_account()
    s.send(s.e.functions.deposit(200_000 * TOKEN), mm)
    for mid in range(s.markets):
        s.trade(mm, mid, s.size_for(mid, 10_000.0, 2.0))


def cross_margin_curve(chain: Chain, cfg1: Config, kind: str) -> dict[int, dict[str, int]]:
    """Withdrawal and increase (market 0) of one warm account holding 1..CURVE_MARKETS positions
    (one more market each step): the entry points whose health check quotes every open market."""
    s = System(chain, n_market_config(cfg1, CURVE_MARKETS), kind)
    _seed_open_interest(s)
    a = s.new_account()
    s.send(s.e.functions.deposit(100_000 * TOKEN), a)
    out: dict[int, dict[str, int]] = {}
    for n in range(1, s.markets + 1):
        s.trade(a, n - 1, s.size_for(n - 1, 2_000.0, 2.0))
        out[n] = {"withdraw": s.gas(s.e.functions.withdraw(100 * TOKEN), a),
                  "increase": s.trade(a, 0, s.size_for(0, 100.0, 1.0))}
    return out


def _keeper_and_admin(s: System, out: dict[str, dict[str, int]]) -> None:
    col = f"{s.markets}m_fresh"
    nudges = {"price": 1.001, "volatility": 1.02, "depth": 1.02}

    def nudged(k: str) -> float:
        cur = s.feed_value(0, k)
        return cur * nudges[k] if k in nudges else cur + (0.00001 if k == "funding" else -0.01)
    out["transmit_price"][col] = s.set_feed(0, "price", nudged("price"))
    out["report_one"][col] = s.set_feed(0, "volatility", nudged("volatility"))
    out["report_all"][col] = s.report(0, {k: nudged(k) for k in FEED_KINDS if k != "price"})
    feeds = s.dep.feeds[0]
    pusher = s.dep.pusher
    price = int(feeds["price"].functions.latestRoundData().call()[1])
    out["push_price"][col] = s.gas(pusher.functions.push([feeds["price"].address], [price], [], [0]), s.admin)
    answers = {k: int(feeds[k].functions.latestRoundData().call()[1]) for k in FEED_KINDS}
    answers["price"] = price * 1001 // 1000
    addrs, ans, reports = pusher_args(s.dep.feeds, s.dep.reported, {0: answers})
    out["push_all"][col] = s.gas(pusher.functions.push(addrs, ans, reports, [0]), s.admin)
    c = s.dep.controller
    if s.kind != "dynamic":
        out["poke_noop"][col] = s.gas(c.functions.poke(0), s.admin)
        return
    s.send(c.functions.poke(0), s.admin)
    out["poke_noop"][col] = s.gas(c.functions.poke(0), s.admin)
    vol = s.feed_value(0, "volatility")
    s.set_feed(0, "volatility", vol * 1.6)
    out["poke_tighten"][col] = s.gas(c.functions.poke(0), s.admin, trace_as="poke_tighten")
    s.set_feed(0, "volatility", vol * 0.6)
    out["poke_loosen"][col] = s.gas(c.functions.poke(0), s.admin)
    s.set_feed(0, "volatility", vol)
    s.send(c.functions.poke(0), s.admin)
    snap = s.snapshot()
    try:
        p = s.config.market(0).params
        tighter = replace(p, liq_fee_wad=p.liq_fee_wad * 11 // 10, z_wad=p.z_wad + 10**16)
        out["propose_params"][col] = s.gas(c.functions.proposeParams(0, tighter.as_tuple()), s.admin)
        s.chain.mine(s.chain.latest_timestamp() + s.config.engine.param_delay_sec + 1)
        out["execute_params"][col] = s.gas(c.functions.executeParams(0, tighter.as_tuple()), s.admin)
        s.send(c.functions.proposeParams(0, p.as_tuple()), s.admin)
        out["cancel_params"][col] = s.gas(c.functions.cancelParams(0), s.admin)
    finally:
        s.revert(snap)


# ------------------------------------------------------------------------------ attribution

# MarginEngine storage layout (``forge inspect MarginEngine storageLayout``); checked against the
# live contract in ``_engine_slot_names`` (a mismatch stops the benchmark: update these names).
ENGINE_SLOTS = {1: "book: vaultBalance, insuranceFund", 2: "book: protocolFees, pendingOrders, impactPools",
                3: "book: netDeposits", 4: "_badDebt (total, covered)"}
SLOT_HARD_CAP, SLOT_MARKETS, SLOT_ACCOUNTS, SLOT_POSITIONS, SLOT_ORDERS = 5, 6, 7, 8, 9


def _mapping_slot(key: int | str, base: int) -> int:
    k = int(key, 16) if isinstance(key, str) else key
    return int.from_bytes(Web3.keccak(k.to_bytes(32, "big") + base.to_bytes(32, "big")), "big")


def _engine_slot_names(s: System, accounts: list[tuple[str, str]]) -> dict[int, str]:
    """Storage slot -> variable name for the engine's scalars and the mappings of ``accounts``."""
    names: dict[int, str] = dict(ENGINE_SLOTS)
    for mid in range(s.markets):
        base = _mapping_slot(mid, SLOT_MARKETS)
        names[base] = f"_markets[{mid}] (open interest)"
        names[base + 1] = f"_markets[{mid}] (funding)"
        names[base + 2] = f"_markets[{mid}] (impact pool, last price)"
        names[_mapping_slot(mid, SLOT_HARD_CAP)] = f"oiHardCapUsdWad[{mid}]"
    for a, who in accounts:
        names[_mapping_slot(a, SLOT_ACCOUNTS)] = f"_accounts[{who}] (collateral, open markets, flag)"
        inner = _mapping_slot(a, SLOT_POSITIONS)
        orders = _mapping_slot(a, SLOT_ORDERS)
        for mid in range(s.markets):
            base = _mapping_slot(mid, inner)
            names[base] = names[base + 1] = f"_positions[{who}][{mid}]"
            names[_mapping_slot(mid, orders)] = f"_orders[{who}][{mid}]"
    # Check the layout on the live contract.
    rpc, e = s.chain.rpc, s.e.address

    def word(slot: int) -> int:
        return int(rpc.call("eth_getStorageAt", [e, hex(slot), "latest"]), 16)

    net = word(3) % 2**128
    if net != s.e.functions.netDeposits().call():
        raise RuntimeError(f"engine storage layout changed (slot 3 holds {net}, netDeposits() is "
                           f"{s.e.functions.netDeposits().call()}): update ENGINE_SLOTS in benchmarks/gas.py")
    if accounts:
        a0 = accounts[0][0]
        coll = word(_mapping_slot(a0, SLOT_ACCOUNTS)) % 2**128
        want = s.e.functions.collateralOf(a0).call() % 2**128
        if coll != want:
            raise RuntimeError(f"engine storage layout changed (the _accounts slot of {a0} holds {coll}, "
                               f"collateralOf is {want}): update SLOT_ACCOUNTS in benchmarks/gas.py")
    return names


@dataclass
class Frame:
    """Gas of one call frame. ``inclusive``: what the call cost its caller, with the cold-access and
    memory overhead of the call itself."""

    label: str
    inclusive: int = 0
    sstores: list[tuple[int, int]] = field(default_factory=list)
    """(slot, gas) of every SSTORE."""
    sloads: list[tuple[int, int]] = field(default_factory=list)
    logs: list[int] = field(default_factory=list)
    other: int = 0
    children: list[Frame] = field(default_factory=list)

    @property
    def own(self) -> int:
        return sum(g for _, g in self.sstores) + sum(g for _, g in self.sloads) + sum(self.logs) + self.other


def _walk(logs: list[dict[str, Any]], i: int, depth: int, frame: Frame, label_of: Callable[[int], str],
          counter: list[int]) -> int:
    """Consume the steps of the frame at ``depth`` starting at ``i``; return the index after it."""
    n = len(logs)
    while i < n and logs[i]["depth"] == depth:
        st = logs[i]
        op = st["op"]
        if op in CALL_OPS:
            k = counter[0]
            counter[0] += 1
            child = Frame(label_of(k))
            nested = i + 1 < n and logs[i + 1]["depth"] > depth
            j = _walk(logs, i + 1, depth + 1, child, label_of, counter) if nested else i + 1
            child.inclusive = int(st["gas"]) - int(logs[j]["gas"]) if j < n else int(st["gasCost"])
            frame.children.append(child)
            i = j
            continue
        cost = int(st["gasCost"])
        if op == "SSTORE":
            frame.sstores.append((int(st["stack"][-1], 16), cost))
        elif op == "SLOAD":
            frame.sloads.append((int(st["stack"][-1], 16), cost))
        elif op.startswith("LOG"):
            frame.logs.append(cost)
        else:
            frame.other += cost
        i += 1
    return i


def _sig_type(arg: dict[str, Any]) -> str:
    t = str(arg["type"])
    if t.startswith("tuple"):
        return "(" + ",".join(_sig_type(c) for c in arg["components"]) + ")" + t[5:]
    return t


def trace_tx(s: System, tx_hash: str) -> dict[str, Any]:
    """Trace a transaction (struct logs with the stack, plus the call tracer for the callees' names)
    and name the engine's storage slots it wrote."""
    rpc = s.chain.rpc
    st = rpc.call("debug_traceTransaction", [tx_hash, {"disableMemory": True, "disableStorage": True}])
    ct = rpc.call("debug_traceTransaction", [tx_hash, {"tracer": "callTracer"}])
    tx = rpc.call("eth_getTransactionByHash", [tx_hash])
    rec = rpc.call("eth_getTransactionReceipt", [tx_hash])
    names: dict[str, str] = {s.e.address.lower(): "engine", s.dep.controller.address.lower(): "controller",
                             s.dep.usd.address.lower(): "token"}
    for fs in s.dep.feeds.values():
        for k, f in fs.items():
            names[f.address.lower()] = "feed"
    sels: dict[str, str] = {}
    for c in (s.e, s.dep.controller, s.dep.usd, s.dep.feeds[0]["price"]):
        abi: list[dict[str, Any]] = list(c.abi)  # type: ignore[arg-type]
        for item in abi:
            if item.get("type") == "function":
                sig = f"{item['name']}({','.join(_sig_type(i) for i in item['inputs'])})"
                sels[_hex(Web3.keccak(text=sig)[:4])] = item["name"]
    flat: list[dict[str, Any]] = []

    def pre(c: dict[str, Any]) -> None:
        for ch in c.get("calls", []) or []:
            flat.append(ch)
            pre(ch)

    pre(ct)

    def label_of(k: int) -> str:
        if k >= len(flat):
            return "call"
        c = flat[k]
        return f"{names.get(str(c.get('to', '')).lower(), str(c.get('to')))}.{sels.get(str(c.get('input', ''))[:10], '?')}"

    root = Frame(names.get(str(tx["to"]).lower(), "contract"))
    logs = st["structLogs"]
    _walk(logs, 0, 1, root, label_of, [0])
    data = bytes.fromhex(tx["input"][2:])
    intrinsic = 21_000 + sum(16 if b else 4 for b in data)
    first, last = logs[0], logs[-1]
    execution = int(first["gas"]) - (int(last["gas"]) - int(last["gasCost"]))
    used = int(rec["gasUsed"], 16)
    fn = sels.get(tx["input"][:10])
    sender = Web3.to_checksum_address(tx["from"])
    accounts: list[tuple[str, str]] = [(sender, "account")]
    if fn in ("liquidate", "settleOrder"):
        other = Web3.to_checksum_address("0x" + tx["input"][34:74])
        accounts = ([(sender, "liquidator"), (other, "liquidated account")] if fn == "liquidate"
                    else [(other, "account"), (sender, "settler")])
    slot_names = _engine_slot_names(s, accounts) if root.label == "engine" else {}
    return {"gas_used": used, "intrinsic": intrinsic, "execution": execution, "refund": intrinsic + execution - used,
            "root": root, "slot_names": slot_names}


def _sstore_class(g: int) -> str:
    if g >= 20_000:
        return "new"
    if g >= 2_900:
        return "update"
    return "dirty"


def breakdown(tr: dict[str, Any]) -> list[tuple[str, int, str, int]]:
    """(label, gas, count text, indent) lines of a traced transaction; the indent-0 lines sum to the
    receipt's gas, indent-1 lines detail the line above them."""
    root: Frame = tr["root"]
    out: list[tuple[str, int, str, int]] = [("calldata + 21,000 base (intrinsic)", tr["intrinsic"], "", 0)]
    groups: dict[str, list[Frame]] = {}
    for c in root.children:
        groups.setdefault(c.label, []).append(c)
    for label, fs in groups.items():
        out.append((f"{label} (incl. call overhead)", sum(f.inclusive for f in fs), f"{len(fs)}", 0))
        sub: dict[str, list[Frame]] = {}
        for f in fs:
            for g in f.children:
                sub.setdefault("feed reads (latestRoundData, getRoundData)" if g.label.startswith("feed.") else g.label, []).append(g)
        inner = 0
        for sl, gs in sub.items():
            v = sum(g.inclusive for g in gs)
            inner += v
            out.append((sl, v, f"{len(gs)}", 1))
        who = label.split(".")[0]
        loads = [x for f in fs for x in f.sloads]
        if loads:
            cold = sum(1 for _, g in loads if g >= 2_100)
            v = sum(g for _, g in loads)
            inner += v
            out.append((f"{who} storage reads (SLOAD, cold/all)", v, f"{cold}/{len(loads)}", 1))
        stores = [x for f in fs for x in f.sstores]
        if stores:
            v = sum(g for _, g in stores)
            inner += v
            out.append((f"{who} storage writes (SSTORE)", v, f"{len(stores)}", 1))
        out.append((f"{who} compute, memory, call overhead", sum(f.inclusive for f in fs) - inner, "", 1))
    names = tr.get("slot_names", {})
    total_st = sum(g for _, g in root.sstores)
    out.append((f"{root.label} storage writes (SSTORE)", total_st, f"{len(root.sstores)}", 0))
    by: dict[str, list[int]] = {}
    for slot, cost in root.sstores:
        by.setdefault(names.get(slot, "other slots"), []).append(cost)
    for name, costs in sorted(by.items(), key=lambda x: -sum(x[1])):
        cls = sorted({_sstore_class(c) for c in costs})
        out.append((f"{name} [{'/'.join(cls)}]", sum(costs), f"{len(costs)}", 1))
    loads = root.sloads
    out.append((f"{root.label} storage reads (SLOAD, cold/all)", sum(g for _, g in loads),
                f"{sum(1 for _, g in loads if g >= 2_100)}/{len(loads)}", 0))
    reads: dict[str, list[int]] = {}
    for slot, cost in loads:
        reads.setdefault(names.get(slot, "other slots"), []).append(cost)
    for name, costs in sorted(reads.items(), key=lambda x: -sum(x[1])):
        out.append((name, sum(costs), f"{sum(1 for c in costs if c >= 2_100)}/{len(costs)}", 1))
    out.append((f"{root.label} events (LOG)", sum(root.logs), f"{len(root.logs)}", 0))
    out.append((f"{root.label} arithmetic, memory, ABI (rest)", root.other, "", 0))
    out.append(("refund (storage reset/cleared)", -tr["refund"], "", 0))
    return out


# ------------------------------------------------------------------------------ driver

Lines = list[tuple[str, int, str, int]]
TRACED = ("open_1m_fresh", "open_1m_warm", "open_3m_warm", "liquidate_partial_1m_fresh", "liquidate_partial_1m_warm",
          "liquidate_full_1m_fresh", "liquidate_full_1m_warm", "liquidate_partial_3m_warm")
RATIO_ROWS = ("withdraw", "open", "increase", "reduce", "close", "liquidate_partial", "liquidate_full")
"""Entry points that do the same work on both controllers (``poke`` is a no-op on the static one)."""


def run(*, verbose: bool = True) -> dict[str, Any]:
    """Measure everything; return the figures (``tables`` and ``summary`` format them)."""
    t0 = time.monotonic()
    build_contracts()  # the engine as it is in contracts/ now (forge's cache makes this quick)
    cfg1 = load_config()
    cfg3 = three_market_config(cfg1)
    res: dict[str, Any] = {}
    attribution: dict[str, dict[str, Lines]] = {}
    curve: dict[str, dict[int, dict[str, int]]] = {}
    notes: list[str] = []
    with Anvil(extra_args=["--steps-tracing"]) as node:
        chain = Chain(node.url)
        chain.auto_impersonate(True)
        # One second per block, whatever the wall clock: the same storage writes in every run (a
        # funding accrual in the same second as the last one would write nothing).
        chain.rpc.call("anvil_setBlockTimestampInterval", [1])
        for kind in ("dynamic", "static_calm"):
            table: dict[str, dict[str, int]] = {key: {} for key, _ in ROWS}
            for cfg in (cfg1, cfg3):
                s = System(chain, cfg, kind)
                _seed_open_interest(s)
                # ... and one bad debt already realized (its counters exist), as on a live system.
                _liquidation(s, "warmup", table, notes, commit=True)
                for col in COLUMNS:
                    if col.startswith(f"{s.markets}m"):
                        _trading(s, col, table)
                        _liquidation(s, col, table, notes)
                _keeper_and_admin(s, table)
                for tag, h in s.traces.items():
                    if tag in TRACED and tag not in s.trace_results:
                        s.trace_results[tag] = trace_tx(s, h)
                for tag, tr in s.trace_results.items():
                    if tag in TRACED:
                        attribution.setdefault(tag, {})[kind] = breakdown(tr)
                if verbose:
                    print(f"  gas: {kind}, {s.markets} market(s) measured ({time.monotonic() - t0:.0f} s)", flush=True)
            res[kind] = table
            curve[kind] = cross_margin_curve(chain, cfg1, kind)
            if verbose:
                print(f"  gas: {kind}, cross-margin curve 1..{CURVE_MARKETS} markets measured "
                      f"({time.monotonic() - t0:.0f} s)", flush=True)
    return {"table": res, "curve": curve, "attribution": attribution, "notes": notes,
            "wall_sec": time.monotonic() - t0}


def _worst(t: dict[str, dict[str, int]], row: str, cols: tuple[str, ...] = ("1m_fresh", "1m_warm")) -> int:
    vals = [t[row][c] for c in cols if c in t[row]]
    return max(vals) if vals else 0


def summary(r: dict[str, Any]) -> dict[str, Any]:
    """Figures for ``bench.json``: headline = worst of fresh and warm account with one market."""
    dyn, sta = r["table"]["dynamic"], r["table"]["static_calm"]
    out: dict[str, Any] = {}
    for row, _ in ROWS:
        if dyn[row]:
            out[row] = _worst(dyn, row) or _worst(dyn, row, ("3m_fresh",))
    out["liquidate"] = max(out.get("liquidate_partial", 0), out.get("liquidate_full", 0))
    out["settle"] = out.get("open", 0)
    out["commit_plus_settle"] = out.get("commit", 0) + out.get("open", 0)
    out["order"] = out["commit_plus_settle"]
    # A returning trader (slots kept from an earlier order) and a returning liquidator (engine account
    # holding earlier rewards): the warm column alone.
    out["order_returning"] = dyn["commit"].get("1m_warm", 0) + dyn["open"].get("1m_warm", 0)
    out["liquidate_returning"] = max(dyn[k].get("1m_warm", 0) for k in ("liquidate_partial", "liquidate_full"))
    # A liquidation is two transactions, as an order is: flagLiquidation, then liquidate at the first
    # price round after the flag (README, Engine). Its whole cost is their sum, like commit + settle.
    out["liquidation_whole"] = out.get("flag", 0) + out["liquidate"]
    out["liquidation_whole_returning"] = dyn["flag"].get("1m_warm", 0) + out["liquidate_returning"]
    out["report_update"] = max(out.get("report_one", 0), out.get("report_all", 0))
    out["feed_update"] = out.get("transmit_price", 0)
    ratios = {f"{row}_{c}": dyn[row][c] / sta[row][c] for row in RATIO_ROWS for c in COLUMNS
              if c in dyn[row] and sta[row].get(c)}
    out["dynamic_over_static_open"] = _worst(dyn, "open") / _worst(sta, "open")
    out["dynamic_over_static_liquidate"] = (max(_worst(dyn, k) for k in ("liquidate_partial", "liquidate_full"))
                                            / max(_worst(sta, k) for k in ("liquidate_partial", "liquidate_full")))
    out["dynamic_over_static_max"] = max(ratios.values()) if ratios else 0.0
    out["open_cross_margin_3"] = _worst(dyn, "open", ("3m_fresh", "3m_warm"))
    out["liquidate_cross_margin_3"] = max(_worst(dyn, k, ("3m_fresh", "3m_warm"))
                                          for k in ("liquidate_partial", "liquidate_full"))
    cd, cs = r["curve"]["dynamic"], r["curve"]["static_calm"]
    out["curve_ratios"] = {f"{row}_{n}m": cd[n][row] / cs[n][row] for n in cd for row in CURVE_ROWS}
    out["dynamic_over_static_max"] = max(out["dynamic_over_static_max"], *out["curve_ratios"].values())
    out["ratios"] = ratios
    out["static_calm"] = {row: _worst(sta, row) or _worst(sta, row, ("3m_fresh",)) for row, _ in ROWS if sta[row]}
    out["table"] = r["table"]
    out["curve"] = {kind: {str(n): v for n, v in c.items()} for kind, c in r["curve"].items()}
    out["attribution"] = {k: {kind: [list(x) for x in lines] for kind, lines in v.items()}
                          for k, v in r["attribution"].items()}
    out["targets"] = TARGETS
    out["synthetix_v3_reference"] = SYNTHETIX_V3
    out["notes"] = r["notes"]
    return out


def tables(r: dict[str, Any]) -> str:
    """The gas tables: dynamic (with the ratio to static), static, targets, attribution."""
    dyn, sta = r["table"]["dynamic"], r["table"]["static_calm"]
    w0, w = 30, 18
    lines = ["GAS: units of gas per transaction (receipt gasUsed, after refunds); (r.rrx) = dynamic / static_calm", ""]
    head = f"{'entry point':<{w0}}" + "".join(f"{COLUMN_TITLES[c]:>{w}}" for c in COLUMNS)
    for title, t in (("dynamic controller (LeverageController)", dyn),
                     ("static controller (StaticLeverageController, static_calm fractions)", sta)):
        lines += [title, head, "-" * len(head)]
        for key, label in ROWS:
            if not any(c in t[key] for c in COLUMNS):
                continue
            cells = []
            for c in COLUMNS:
                v = t[key].get(c)
                if v is None:
                    cells.append("-")
                elif t is dyn and key in RATIO_ROWS and sta[key].get(c):
                    cells.append(f"{v:,} ({v / sta[key][c]:.2f}x)")
                else:
                    cells.append(f"{v:,}")
            lines.append(f"{label:<{w0}}" + "".join(f"{x:>{w}}" for x in cells))
        lines.append("")
    lines.append("fresh: first deposit / first position of a new address, new liquidator; warm: account with history, "
                 "liquidator whose engine account holds earlier rewards.")
    lines.append("3 mkt: the account holds positions in the 2 other markets (cross-margin: every health check prices "
                 "3 positions). Keeper/admin rows: one figure per deployment.")
    lines.append("")
    cd, cs = r["curve"]["dynamic"], r["curve"]["static_calm"]
    lines.append(f"cross-margin curve: one warm account holding 1..{CURVE_MARKETS} positions (gas; dynamic / static)")
    lines.append(f"{'open positions':<16}" + "".join(f"{f'{row} dyn':>16}{f'{row} static':>16}{'ratio':>8}"
                                                      for row in CURVE_ROWS))
    for n in sorted(cd):
        lines.append(f"{n:<16}" + "".join(f"{cd[n][row]:>16,}{cs[n][row]:>16,}{cd[n][row] / cs[n][row]:>7.3f}x"
                                          for row in CURVE_ROWS))
    lines.append("")
    sm = summary(r)
    lines.append("targets (one market, worst of fresh and warm account; the ratio over every column and the curve)")
    lines.append(f"{'':<32}{'measured':>12}{'target':>12}  {'status':<7} Synthetix v3 perps, PR #2147 (avg of 200 calls)")
    for label, v, tgt, ref in (
            ("order (commit + settle open)", sm["order"], TARGETS["order"], "commit 322k + settle 731k"),
            ("  returning trader (warm)", sm["order_returning"], TARGETS["order"], ""),
            ("liquidation (flag + liquidate)", sm["liquidation_whole"], TARGETS["liquidate"], "liquidatePosition 346k"),
            ("  returning liquidator (warm)", sm["liquidation_whole_returning"], TARGETS["liquidate"], ""),
            ("  liquidate step alone", sm["liquidate"], TARGETS["liquidate"], ""),
            ("    returning liquidator (warm)", sm["liquidate_returning"], TARGETS["liquidate"], ""),
            ("risk report (4 fields)", sm["report_update"], TARGETS["report_update"], "-")):
        lines.append(f"{label:<32}{v:>12,}{tgt:>12,}  {'pass' if v <= tgt else 'MISS':<7} {ref}")
    for label, key, ref in (("commitOrder (open)", "commit", "commitOrder 322k"),
                            ("settleOrder (open)", "open", "settleOrder 731k"), ("commitClose", "commit_close", "-"),
                            ("flagLiquidation", "flag", "-"), ("feed update: price", "feed_update", "-"),
                            ("RiskPusher.push: price", "push_price", "-"),
                            ("RiskPusher.push: price + report", "push_all", "-")):
        lines.append(f"{label:<32}{sm.get(key, 0):>12,}{'-':>12}  {'':<7} {ref}")
    tgt = TARGETS["dynamic_over_static"]
    for label, v in (("dynamic / static, open", sm["dynamic_over_static_open"]),
                     ("dynamic / static, liquidate", sm["dynamic_over_static_liquidate"]),
                     ("dynamic / static, worst entry", sm["dynamic_over_static_max"])):
        lines.append(f"{label:<32}{v:>11.2f}x{tgt:>11.2f}x  {'pass' if v <= tgt else 'MISS':<7}")
    every = {**sm["ratios"], **{f"curve_{k}": v for k, v in sm["curve_ratios"].items()}}
    if every:
        k = max(every, key=lambda x: every[x])
        lines.append(f"  (worst ratio: {k} = {every[k]:.3f}x)")
    lines.append("")
    dyn_tab = r["table"]["dynamic"]

    def worst_col(row: str) -> str:
        return max(("1m_fresh", "1m_warm"), key=lambda c: dyn_tab[row].get(c, 0))

    shown = [f"open_{worst_col('open')}", "open_3m_warm", f"liquidate_partial_{worst_col('liquidate_partial')}",
             f"liquidate_full_{worst_col('liquidate_full')}"]
    for tag in shown:
        a = r["attribution"].get(tag)
        if not a:
            continue
        lines += _attribution_table(tag, a)
    lines += closing_note(r, sm, shown)
    if r["notes"]:
        lines += ["notes: " + "; ".join(r["notes"]), ""]
    return "\n".join(lines)


def _attribution_table(tag: str, a: dict[str, Lines]) -> list[str]:
    kinds = [k for k in ("dynamic", "static_calm") if k in a]
    lines = [f"where the gas goes: {tag.replace('_', ' ')}   (gas, count)",
             f"{'':<62}" + "".join(f"{k:>18}" for k in kinds)]
    merged: dict[tuple[str, int], dict[str, tuple[int, str]]] = {}
    order: list[tuple[str, int]] = []
    for k in kinds:
        last0 = ""
        for lbl, g, n, ind in a[k]:
            key = (f"{last0} / {lbl}" if ind else lbl, ind)
            if ind == 0:
                last0 = lbl
            if key not in merged:
                merged[key] = {}
                order.append(key)
            merged[key][k] = (g, n)
    for p in [k for k in order if k[1] == 0]:
        for key in [p] + [k for k in order if k[1] == 1 and k[0].startswith(p[0] + " / ")]:
            lbl = key[0].split(" / ", 1)[1] if key[1] else key[0]
            cells = []
            for k in kinds:
                if k in merged[key]:
                    g, n = merged[key][k]
                    cells.append(f"{g:,}" + (f" ({n})" if n else ""))
                else:
                    cells.append("-")
            lines.append(f"{('  ' * key[1] + lbl)[:61]:<62}" + "".join(f"{c:>18}" for c in cells))
    tot = [sum(g for _, g, _, ind in a[k] if ind == 0) for k in kinds]
    lines.append(f"{'total (= receipt gasUsed)':<62}" + "".join(f"{t:>18,}" for t in tot))
    lines.append("")
    return lines


def _line(a: Lines, prefix: str, indent: int = 0) -> tuple[int, str]:
    for lbl, g, n, ind in a:
        if ind == indent and lbl.startswith(prefix):
            return g, n
    return 0, ""


def closing_note(r: dict[str, Any], sm: dict[str, Any], shown: list[str]) -> list[str]:
    """What the gas goes to wherever a target is missed (from the traces)."""
    out = ["closing note"]
    att = r["attribution"]
    for what, tag in (("order", shown[0]), ("liquidate", shown[3] if sm["liquidate_full"] >= sm["liquidate_partial"]
                                              else shown[2])):
        v, tgt = sm[what], TARGETS[what]
        a = att.get(tag, {}).get("dynamic")
        if v <= tgt or not a:
            out.append(f"- {what}: {v:,} gas, within the {tgt:,} target.")
            continue
        q, nq = _line(a, "controller.quote")
        feeds, nf = _line(a, "feed reads", 1)
        sl, nsl = _line(a, "controller storage reads", 1)
        cc, _ = _line(a, "controller compute", 1)
        sst, nst = _line(a, "engine storage writes")
        new = sum(g for lbl, g, _, ind in a if ind == 1 and "new" in lbl.rsplit("[", 1)[-1])
        sld, _ = _line(a, "engine storage reads")
        intr, _ = _line(a, "calldata")
        tok, _ = _line(a, "token.transfer")
        out.append(
            f"- {what}: {v:,} gas" + (f" (commit {sm['commit']:,} + settle {sm['open']:,})" if what == "order" else "")
            + f", {v - tgt:,} over the {tgt:,} target ({tag.replace('_', ' ')}, traced). "
            f"The controller's quote takes {q:,} ({q / v:.0%}): {nf} feed reads {feeds:,}, "
            f"{nsl.split('/')[0]} cold storage reads {sl:,}, arithmetic {cc:,}. Engine storage writes {sst:,} "
            f"({nst} SSTOREs, {new:,} of them creating slots), engine storage reads {sld:,}, calldata and base "
            f"{intr:,}" + (f", the token transfer ({'settlement fee' if what == 'order' else 'reward'}) {tok:,}"
                           if tok else "") + ".")
    whole, tgt = sm["liquidation_whole"], TARGETS["liquidate"]
    out.append(f"- liquidation as a whole (flagLiquidation {sm.get('flag', 0):,} + liquidate {sm['liquidate']:,}): "
               f"{whole:,} gas, " + (f"{whole - tgt:,} over" if whole > tgt else "within") + f" the {tgt:,} target "
               f"(returning liquidator {sm['liquidation_whole_returning']:,}). The flag is its own transaction "
               f"(21,000 intrinsic) and a health check of the account (one quote per open market).")
    if sm["dynamic_over_static_open"] > TARGETS["dynamic_over_static"]:
        d, s_ = att.get(shown[0], {}).get("dynamic"), att.get(shown[0], {}).get("static_calm")
        if d and s_:
            qd, qs = _line(d, "controller.quote")[0], _line(s_, "controller.quote")[0]
            fd, fs = _line(d, "feed reads", 1)[0], _line(s_, "feed reads", 1)[0]
            sd, ss = _line(d, "controller storage reads", 1)[0], _line(s_, "controller storage reads", 1)[0]
            cd, cs = _line(d, "controller compute", 1)[0], _line(s_, "controller compute", 1)[0]
            oi = _line(d, "engine.openInterest", 1)[0]
            out.append(
                f"- dynamic / static = {sm['dynamic_over_static_open']:.2f}x on open "
                f"({sm['dynamic_over_static_max']:.2f}x worst, cross-margin): the whole difference is the quote, "
                f"{qd:,} vs {qs:,} per priced position (+{qd - qs:,}): external feed reads "
                f"+{fd - fs:,}, controller storage (risk report, tails, ramps) +{sd - ss:,}, the model's arithmetic "
                f"+{cd - cs:,}, the open-interest callback +{oi:,}. Engine-side gas is the same for both.")
    a3 = att.get("open_3m_warm", {}).get("dynamic")
    if a3 and sm["open_cross_margin_3"] + sm.get("commit", 0) > TARGETS["order"]:
        q3, n3 = _line(a3, "controller.quote")
        out.append(f"- cross-margin: with positions in 3 markets an open costs {sm['open_cross_margin_3']:,} "
                   f"(liquidation {sm['liquidate_cross_margin_3']:,}): every health check quotes every open "
                   f"market, {n3} quotes for {q3:,} gas ({q3 // max(1, int(n3 or 1)):,} each).")
    out.append("")
    return out


__all__ = ["run", "summary", "tables", "three_market_config", "n_market_config", "cross_margin_curve", "trace_tx", "breakdown", "TARGETS", "SYNTHETIX_V3"]
