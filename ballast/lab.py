"""The crash stress lab: replays a scenario block by block on an embedded Anvil with a population
of traders and liquidators, mirrors every transaction in Python, and verifies the chain.

Per block, in this order (engine v2, issue 10; see ``ballast.labflow``):

1. the oracle keeper's ONE ``RiskPusher.push`` transaction: the feeds that are due, plus, as the
   lab's model of a pull oracle, the scenario's current price whenever a pending order or a flagged
   account waits for a round after its settle-from time; then the controller's poke and the
   market's funding accrual, atomically;
2. the settlement keeper settles each pending order at its first eligible round (the first round
   published at or after commit + ``orderMinDelaySec``; it is paid the settlement fee), and cancels
   expired orders (refund);
3. liquidators liquidate the accounts they flagged, at the first round after the flag, in the
   market the engine prefers (``liquidationMarket``);
4. liquidators flag what they saw under water ``latency`` blocks ago;
5. traders commit orders (``commitOrder``, ``commitClose``) to open, close and cut positions.

Then the block is mined and every receipt is applied, in order, to the exact engine mirror
(``ballast.mirror``). The lab fails the run on any disagreement between chain and mirror (outcome of
every transaction; the amounts of every order commit, settlement, cancellation, liquidation, funding
accrual and bad debt event; every bucket, order escrow and impact pools included, each block; every
account, position and pending order at the end), on a liquidation of an account the mirror finds
healthy, on an account left below maintenance more than ``max_unhealthy_blocks`` blocks while
liquidations can run (the keeper up, the price publishable), and on any token-conservation gap.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np
from eth_abi.abi import decode as abi_decode
from web3 import Web3

from ballast._typing import WAD
from ballast.calm import calm_fractions, calm_mask
from ballast.chain import Anvil, Chain, Encoder, Rpc
from ballast.config import FEED_KINDS, Config, StaticFractions, load_config, to_wad
from ballast.deploy import ControllerKind, Deployment, deploy
from ballast.errors import ChainError, VerificationError
from ballast.keeper import DepthMode, FeedModel, OracleKeeper, VolMode
from ballast.labflow import PriceRounds, Round, topic, waiting_for_round
from ballast.mirror import EngineMirror, Feed, MarketMirror, MirrorRevert
from ballast.model import Ramp, RiskInputs, compute, skew_impact
from ballast.population import LiquidatorSpec, Trader, liquidator_address
from ballast.riskreport import pusher_args
from ballast.scenarios import ScenarioPath

MARKET = 0
TOKEN = 10**6
GAS = hex(3_000_000)
FUND_PER_BLOCK = 500
"""Deposits mined per block while funding the population before a scenario."""
SETTLER = Web3.to_checksum_address(f"0x{0x5E771E << 136 | 1:040x}")
"""The settlement keeper (impersonated): settles orders, cancels expired ones, earns the fees."""

T_POSITION = topic("PositionModified(address,uint256,int256,int256,uint256,int256,uint256,int256)")
T_COMMITTED = topic("OrderCommitted(address,uint256,int256,bool,uint256,uint256,uint256,uint256)")
T_SETTLED = topic("OrderSettled(address,uint256,address,uint80,uint256,uint256)")
T_CANCELLED = topic("OrderCancelled(address,uint256,uint256)")
T_FLAGGED = topic("LiquidationFlagged(address,address,uint256)")
T_LIQUIDATED = topic("Liquidated(address,uint256,address,int256,uint256,uint256,uint256,uint256)")
T_LIQ_SETTLED = topic("LiquidationSettled(address,uint256,int256,int256,int256)")
T_BADDEBT = topic("BadDebt(address,uint256,uint256,uint256)")
T_ACCRUED = topic("FundingAccrued(uint256,int256,int256,uint256)")
T_POKE_FAILED = topic("PokeFailed(uint256,bytes)")
T_ACCRUE_FAILED = topic("AccrueFailed(uint256,bytes)")
T_LOOSENED = topic("MaintenanceLoosened(uint256,bool,uint256,uint256)")
T_SCHEDULED = topic("MaintenanceTighteningScheduled(uint256,bool,uint256,uint256,uint256,uint256)")
T_RAISED = topic("MaintenanceTargetRaised(uint256,bool,uint256)")
SERIES = ("price", "oracle_price", "vol", "max_lev_long", "max_lev_short", "liquidations", "liquidated_notional_usd",
          "insurance_usd", "bad_debt_usd", "oi_long", "oi_short", "unhealthy", "depth_usd", "skew", "funding",
          "mmf_long", "mmf_short", "orders_settled")


def _logs(r: dict[str, Any], t0: str) -> list[bytes]:
    """Data of the receipt's logs with topic0 ``t0``."""
    return [bytes.fromhex(lg["data"][2:]) for lg in r.get("logs", []) if lg["topics"][0] == t0]


@dataclass
class Violation:
    block: int
    check: str
    account: str
    detail: str


@dataclass
class RunResult:
    """Everything one run measured (plain data: picklable and JSON-ready)."""

    kind: str
    metrics: dict[str, float]
    series: dict[str, list[float]]
    checks: int
    violations: list[dict[str, Any]]
    tx_sent: int
    wall_sec: float
    static: dict[str, float] | None = None
    head_hash: str = ""
    """Hash of the chain's last block: equal on two identical runs exactly when every block (its
    transactions, timestamps and state) is the same."""


@dataclass
class _TraderState:
    session: int = 0
    open: bool = False
    entry_vol: float = 0.0
    cut: bool = False


@dataclass
class _Pending:
    kind: str
    sender: str = ""
    account: str = ""
    delta: int = 0
    pushes: dict[str, int] = field(default_factory=dict)
    round_id: int = 0
    market: int = MARKET


@dataclass
class _Plan:
    """One block's transactions, in sending order, with what each one is."""

    sends: list[tuple[str, list[Any]]] = field(default_factory=list)
    meta: list[_Pending] = field(default_factory=list)
    price_round: Round | None = None
    """The price round this block's keeper transaction publishes (if it publishes one)."""


@dataclass
class _Counters:
    liquidations: int = 0
    liquidated_notional: int = 0
    penalties: int = 0
    """Liquidation penalties paid by traders, token units (issue 12: the traders' harm)."""
    accounts_liquidated: set[str] = field(default_factory=set)
    flags: int = 0
    commits: int = 0
    settled: int = 0
    settle_reverts: int = 0
    cancelled: int = 0
    settle_delay_sec: int = 0
    on_demand_pushes: int = 0
    block_liqs: int = 0
    block_liq_notional: int = 0
    block_settled: int = 0


class LabRun:
    """One scenario x population x controller run on its own chain."""

    def __init__(self, chain: Chain, scenario: ScenarioPath, traders: list[Trader], config: Config,
                 kind: ControllerKind, *, static: StaticFractions | None = None, keeper_mode: VolMode = "trailing",
                 liquidators: LiquidatorSpec = LiquidatorSpec(), max_unhealthy_blocks: int = 5,
                 keeper_down: tuple[int, int] | None = None,
                 progress: Callable[[int, int, dict[str, float]], None] | None = None,
                 depth_mode: DepthMode = "trailing") -> None:
        self.chain = chain
        self.sc = scenario
        self.traders = traders
        self.cfg = config
        self.kind = kind
        self.static = static
        self.liq = liquidators
        self.max_unhealthy = max_unhealthy_blocks
        self.progress = progress
        self.keeper_down = keeper_down
        """(first block, blocks): the oracle keeper process dies and restarts with no memory."""
        self.keeper_restarts = 0
        self.model = FeedModel(scenario, keeper_mode, base_depth_usd=config.market(MARKET).initial["depth"],
                               depth_mode=depth_mode, horizon_sec=config.market(MARKET).params.horizon_sec)
        self.keeper = OracleKeeper(decimals=config.market(MARKET).feed_decimals)
        self.violations: list[Violation] = []
        self._nonces: dict[str, int] = {}
        self.checks = 0
        self.tx_sent = 0
        self.n = _Counters()
        self.state = {t.address: _TraderState() for t in traders}
        self.unhealthy_streak: dict[str, int] = {}
        self.seen_liquidatable: list[list[str]] = []
        self.flag_pending: dict[str, str] = {}
        """Accounts flagged (by the liquidator named) and not yet liquidated at their round."""

    # ------------------------------------------------------------------ setup
    def _setup(self) -> None:
        ch = self.chain
        overrides = {MARKET: self.static} if self.static else None
        self.dep: Deployment = deploy(ch, self.cfg, kind=self.kind, static_overrides=overrides)
        d = self.dep
        self.enc_engine = Encoder(d.engine.abi)
        self.enc_pusher = Encoder(d.pusher.abi)
        self.enc_usd = Encoder(d.usd.abi)
        self.admin = d.admin
        e = d.engine
        m = self.cfg.market(MARKET)
        cfg = [e.functions[f]().call() for f in (
            "tradingFeeWad", "feeInsuranceShareWad", "liquidatorShareWad", "liqTargetRatioWad", "orderMinDelaySec",
            "orderWindowSec", "settlementFeeTokens", "withdrawPriceMaxAgeSec", "oiDepthMultWad", "liqPenaltyFloorWad",
            "liqPenaltyFullDepthWad")]
        mir = EngineMirror.from_engine_config(cfg, e.functions.tokenScale().call())
        feeds = {}
        for i, k in enumerate(FEED_KINDS):
            f = d.feeds[MARKET][k]
            rid, ans, _, upd, _ = f.functions.latestRoundData().call()
            c = d.controller.functions.feedConfig(MARKET, i).call()
            feeds[k] = Feed(ans, m.feed_decimals, upd, c[1], c[2], c[3], reported=k in d.reported)
            if k == "price":
                self.rounds = PriceRounds([Round(rid, ans, upd)])
        if self.kind == "dynamic":
            mm = MarketMirror(MARKET, feeds, "dynamic", params=m.params)
            mm.ramps = [Ramp(*d.controller.functions.ramp(MARKET, True).call()),
                        Ramp(*d.controller.functions.ramp(MARKET, False).call())]
        else:
            s = d.static[MARKET]
            mm = MarketMirror(MARKET, feeds, "static", static_imf_wad=to_wad(s.imf), static_mmf_wad=to_wad(s.mmf),
                              static_impact_wad=m.params.impact_wad, static_liq_fee_wad=m.params.liq_fee_wad)
        mir.markets[MARKET] = mm
        mir.vault = e.functions.vaultBalance().call()
        mir.insurance = e.functions.insuranceFund().call()
        mir.net_deposits = e.functions.netDeposits().call()
        self.mir = mir
        self.insurance0 = mir.insurance
        ch.auto_impersonate(True)
        for a in [t.address for t in self.traders] + [liquidator_address(i) for i in range(self.liq.count)] + [SETTLER]:
            self._nonces[a] = 0  # fresh addresses: nonce 0
        self._fund_traders()

    def _fund_traders(self) -> None:
        """The admin mints and deposits for every trader before the scenario starts, in blocks of at
        most FUND_PER_BLOCK deposits (a node mines one huge block slowly)."""
        ch, d = self.chain, self.dep
        self.deposit_tokens = {t.address: int(t.collateral_usd * TOKEN) for t in self.traders}
        ch.transact(d.usd.functions.mint(self.admin, sum(self.deposit_tokens.values())), self.admin)
        ch.set_automine(False)
        for i in range(0, len(self.traders), FUND_PER_BLOCK):
            group = self.traders[i:i + FUND_PER_BLOCK]
            calls = [self._tx(self.admin, d.engine.address,
                              self.enc_engine("depositFor", [t.address, self.deposit_tokens[t.address]]))
                     for t in group]
            ch.rpc.batch(calls)
            ch.mine()
            metas = [_Pending("deposit", sender=self.admin, account=t.address) for t in group]
            for r, p in self._match(0, metas):
                if r["status"] != "0x1":
                    raise VerificationError(f"deposit for {p.account} failed: {r}")
            self.tx_sent += len(calls)
        for a, amount in self.deposit_tokens.items():
            self.mir.deposit(a, amount)

    def _tx(self, sender: str, to: str, data: str) -> tuple[str, list[Any]]:
        """An unsigned transaction from an impersonated sender, with a locally tracked nonce (a
        batch of several transactions from one sender would otherwise race for the same nonce)."""
        nonce = self._nonces.get(sender)
        if nonce is None:
            nonce = int(self.chain.rpc.call("eth_getTransactionCount", [sender, "pending"]), 16)
        self._nonces[sender] = nonce + 1
        return ("eth_sendTransaction", [{"from": sender, "to": to, "data": data, "gas": GAS, "gasPrice": "0x0",
                                         "nonce": hex(nonce)}])

    def _send(self, plan: _Plan, p: _Pending, to: str, data: str) -> None:
        plan.sends.append(self._tx(p.sender, to, data))
        plan.meta.append(p)

    # ------------------------------------------------------------------ run
    def run(self) -> RunResult:
        t0 = time.monotonic()
        self._setup()
        sc = self.sc
        # Block times follow the scenario; on a fork whose clock is past the scenario, shift it.
        self.t_start = max(sc.start_utc, self.chain.latest_timestamp() + sc.block_sec)
        series: dict[str, list[float]] = {k: [] for k in SERIES}
        self.peak_ins = self.insurance0
        self.ins_drawdown = 0
        for b in range(sc.blocks):
            ts = self.t_start + b * sc.block_sec
            publishable = self._block(b, ts)
            self._watch_health(b, ts, publishable)
            self._record(b, ts, series)
            if self.progress:
                self.progress(b + 1, sc.blocks, {"liquidations": self.n.liquidations,
                                                 "bad_debt_usd": self.mir.bad_debt_total / TOKEN,
                                                 "tx": self.tx_sent, "sec": time.monotonic() - t0})
        self._final_check(sc.blocks)
        return self._result(series, time.monotonic() - t0)

    def _block(self, b: int, ts: int) -> bool:
        """Send, mine and verify one block. Returns whether the keeper could publish a price."""
        plan = _Plan()
        publishable = self._keeper_sends(b, ts, plan)
        self._settlement_sends(ts, plan)
        self._liquidation_sends(ts, plan)
        self._flag_sends(b, plan)
        self._trader_sends(b, ts, plan)
        if plan.sends:
            # Responses are not needed: receipts are matched to what was sent by sender and nonce,
            # so a lost response (or a resend after one) changes nothing.
            self.chain.rpc.batch(plan.sends)
        self.chain.mine(ts)
        self.tx_sent += len(plan.sends)
        bucket_raw = self._eth_call(self._bucket_calls())
        self.n.block_liqs = self.n.block_liq_notional = self.n.block_settled = 0
        for r, p in self._match(b, plan.meta):
            self.checks += 1
            getattr(self, f"_apply_{p.kind}")(b, ts, r, p, r["status"] == "0x1")
        self._check_buckets(b, bucket_raw)
        return publishable

    # ------------------------------------------------------------------ 1. oracle keeper
    def _keeper_sends(self, b: int, ts: int, plan: _Plan) -> bool:
        """The keeper's one push transaction: what the push rules call for, plus the price on
        demand (pull oracle) when an order or a flag waits for a round. Returns whether a price can
        be published in this block (keeper up, price not stale)."""
        mm = self.mir.markets[MARKET]
        targets = self.model.targets(b, mm.oi_long / WAD, mm.oi_short / WAD)
        # A keeper never pushes an answer its feed would reject: clip to the configured bounds.
        bounds = self.cfg.market(MARKET).bounds
        targets = {k: min(max(v, bounds[k][0]), bounds[k][1]) for k, v in targets.items()}
        onchain = {k: (mm.feeds[k].answer, mm.feeds[k].updated_at) for k in FEED_KINDS}
        down = self.keeper_down is not None and self.keeper_down[0] <= b < sum(self.keeper_down)
        if self.keeper_down is not None and b == sum(self.keeper_down):
            # Restart: a new keeper with no state; it resumes from the feeds' on-chain answers.
            self.keeper = OracleKeeper(decimals=self.keeper.decimals)
            self.keeper_restarts += 1
        if down:
            return False
        stale = bool(self.sc.oracle_stale[b])
        pushes = self.keeper.decide(ts, targets, onchain, stale_price=stale)
        if not stale and "price" not in pushes and waiting_for_round(self._waiting_froms(), self.rounds, ts):
            pushes["price"] = self.keeper.encode(targets["price"])
            self.n.on_demand_pushes += 1
        if pushes or b == 0:
            addrs, answers, reports = pusher_args(self.dep.feeds, self.dep.reported, {MARKET: pushes})
            data = self.enc_pusher("push", [addrs, answers, reports, [MARKET]])
            self._send(plan, _Pending("push", sender=self.admin, pushes=pushes), self.dep.pusher.address, data)
            if "price" in pushes:
                plan.price_round = Round(self.rounds.latest.round_id + 1, pushes["price"], ts)
        return not stale

    def _waiting_froms(self) -> list[int]:
        """Settle-from times of the pending orders and the pending flags."""
        froms = [self.mir.order_times(a, mid)[0] for (a, mid) in self.mir.orders]
        for a in self.flag_pending:
            f = self._flag_settle_from(a)
            if f is not None:
                froms.append(f)
        return froms

    def _flag_settle_from(self, a: str) -> int | None:
        """When a flagged account's liquidation may settle (flag + min delay); None: not flagged."""
        f = self.mir.flagged_at.get(a)
        return None if f is None else f + self.mir.order_min_delay_sec

    def _round_for(self, frm: int, plan: _Plan) -> Round | None:
        """The first round at or after ``frm``: published before, or by this block's push."""
        r = self.rounds.first_from(frm)
        if r is None and plan.price_round is not None and plan.price_round.updated_at >= frm:
            r = plan.price_round
        return r

    # ------------------------------------------------------------------ 2. settlement keeper
    def _settlement_sends(self, ts: int, plan: _Plan) -> None:
        """Settle every pending order at its first eligible round (retried each block until it
        settles or expires: a settlement can fail at one block's live quote and pass at the next);
        cancel the expired ones."""
        e = self.dep.engine.address
        for (a, mid) in sorted(self.mir.orders):
            frm, exp = self.mir.order_times(a, mid)
            if ts > exp:
                self._send(plan, _Pending("cancel", sender=SETTLER, account=a, market=mid), e,
                           self.enc_engine("cancelExpiredOrder", [a, mid]))
                continue
            r = self._round_for(frm, plan)
            if r is not None and r.updated_at <= exp:
                self._send(plan, _Pending("settle", sender=SETTLER, account=a, round_id=r.round_id, market=mid), e,
                           self.enc_engine("settleOrder", [a, mid, r.round_id]))

    # ------------------------------------------------------------------ 3-4. liquidators
    def _liquidation_sends(self, ts: int, plan: _Plan) -> None:
        """Liquidate each flagged account in the block whose push is the first round after its
        flag + delay, in the market the engine prefers (``liquidationMarket``, read on the last
        mined state)."""
        for a, liq in list(self.flag_pending.items()):
            frm = self._flag_settle_from(a)
            if frm is None or self.rounds.first_from(frm) is not None:
                del self.flag_pending[a]  # liquidated, or its round passed: re-flagged when seen again
                continue
            if plan.price_round is None or plan.price_round.updated_at < frm:
                continue  # waits for its round
            try:
                mid = self.mir.liquidation_market(a, ts)
            except MirrorRevert:
                mid = MARKET  # healthy on the last mined state: the new price decides
            del self.flag_pending[a]
            self._send(plan, _Pending("liquidate", sender=liq, account=a, market=mid), self.dep.engine.address,
                       self.enc_engine("liquidate", [a, mid]))

    def _flag_sends(self, b: int, plan: _Plan) -> None:
        """Flag what the liquidators saw under water ``latency`` blocks ago (up to their capacity)."""
        lb = b - self.liq.latency_blocks
        if lb < 0 or lb >= len(self.seen_liquidatable):
            return
        cap = self.liq.count * self.liq.max_per_block
        todo = [a for a in self.seen_liquidatable[lb] if a not in self.flag_pending][:cap]
        for i, a in enumerate(todo):
            liq = liquidator_address(i % self.liq.count)
            self._send(plan, _Pending("flag", sender=liq, account=a), self.dep.engine.address,
                       self.enc_engine("flagLiquidation", [a]))

    # ------------------------------------------------------------------ 5. traders
    def _trader_sends(self, b: int, ts: int, plan: _Plan) -> None:
        """Traders commit orders; decisions use the last mined state (this block's transactions
        are not applied yet). A trader with a pending order waits for it."""
        e = self.dep.engine.address
        for t in self.traders:
            if (t.address, MARKET) in self.mir.orders:
                continue
            stt = self.state[t.address]
            acc = self.mir.accounts.get(t.address)
            pos = acc.positions.get(MARKET) if acc else None
            size = pos.size if pos else 0
            if size != 0:
                stt.open = True
            sess = t.sessions[stt.session] if stt.session < len(t.sessions) else None
            if size == 0 and stt.open:
                stt.open = False  # closed or liquidated: move to the next session
                stt.session += 1
                continue
            p = _Pending("commit", sender=t.address, account=t.address)
            if size == 0 and sess and sess[0] <= b < sess[1]:
                p.delta = self._open_size(t, ts)
                if p.delta:
                    self._send(plan, p, e, self.enc_engine("commitOrder", [MARKET, p.delta, 0]))
                    stt.entry_vol = float(self.model.vol[max(0, b - 1)])
                    stt.cut = False
            elif size != 0 and sess and b >= sess[1]:
                self._send(plan, _Pending("close", sender=t.address, account=t.address), e,
                           self.enc_engine("commitClose", [MARKET, 0]))
            elif (size != 0 and t.anticipatory and not stt.cut
                  and self.model.vol[max(0, b - 1)] > 1.5 * stt.entry_vol > 0):
                p.delta = -(size // 2)
                if p.delta:
                    self._send(plan, p, e, self.enc_engine("commitOrder", [MARKET, p.delta, 0]))
                    stt.cut = True

    def _open_size(self, t: Trader, now: int) -> int:
        """Base-unit size for the trader's chosen fraction of the live maximum leverage, net of the
        settlement fee, the trading fee and the impact of the skew it adds."""
        mir = self.mir
        mm = mir.markets[MARKET]
        ok, price = mm.feeds["price"].read(now)
        if not ok:
            return 0
        eq = mir.health(t.address, now).equity_usd_wad - mir.settlement_fee_tokens * mir.token_scale
        if eq < 10 * WAD:
            return 0
        is_long = t.side > 0
        q = mm.quote(is_long, 0, now)
        size = int(eq * t.lev_frac * WAD / q.imf_wad * WAD / price)
        q = mm.quote(is_long, size, now)
        skew = mm.skew
        charge, _ = skew_impact(q.impact_coef_wad, skew, skew + (size if is_long else -size), price, q.depth_usd_wad)
        impact_frac = charge * WAD // max(1, size * price // WAD)
        size = int(eq * t.lev_frac * WAD / (q.imf_wad + impact_frac + 2 * mir.trading_fee_wad) * WAD / price)
        return size if is_long else -size

    # ------------------------------------------------------------------ apply receipts to the mirror
    def _violate(self, b: int, check: str, account: str, detail: str) -> None:
        self.violations.append(Violation(b, check, account, detail))

    def _outcome(self, b: int, check: str, account: str, ok: bool, m_ok: bool, reason: str) -> bool:
        """Chain and mirror agree on whether a transaction succeeded (else a violation)."""
        if m_ok != ok:
            self._violate(b, check, account,
                          f"chain {'ok' if ok else 'reverted'}, mirror {'ok' if m_ok else 'reverted: ' + reason}")
            return False
        return True

    def _apply_push(self, b: int, ts: int, r: dict[str, Any], p: _Pending, ok: bool) -> None:
        """The keeper's push: feeds, then the poke (ramps from its events) and the accrual."""
        mm = self.mir.markets[MARKET]
        if not ok:
            self._violate(b, "keeper-push", self.admin, f"push {sorted(p.pushes)} reverted")
            return
        for k, ans in p.pushes.items():
            mm.feeds[k].push(ans, ts)
            if k == "price":
                self.rounds.push(ans, ts)
        poked = not _logs(r, T_POKE_FAILED)
        expect = self.kind != "dynamic" or (mm.feeds["volatility"].read(ts)[0] and mm.feeds["skew"].read(ts)[0])
        self._outcome(b, "poke", self.admin, poked, expect, "RiskFeedInvalid")
        if poked and self.kind == "dynamic":
            self._apply_ramps(r, ts)
        try:
            index = self.mir.accrue_funding(MARKET, ts)
            m_ok, reason = True, ""
        except MirrorRevert as err:
            m_ok, reason = False, err.error
        if self._outcome(b, "funding-accrual", "", not _logs(r, T_ACCRUE_FAILED), m_ok, reason) and m_ok:
            for data in _logs(r, T_ACCRUED):
                rate, idx, _t = abi_decode(["int256", "int256", "uint256"], data)
                if (rate, idx) != (mm.last_rate, index):
                    self._violate(b, "funding-accrual", "", f"chain {(rate, idx)} mirror {(mm.last_rate, index)}")

    def _apply_ramps(self, r: dict[str, Any], ts: int) -> None:
        mm = self.mir.markets[MARKET]
        for lg in r.get("logs", []):
            t0 = lg["topics"][0]
            data = bytes.fromhex(lg["data"][2:])
            if t0 == T_LOOSENED:
                side, _frm, to = abi_decode(["bool", "uint256", "uint256"], data)
                mm.ramps[0 if side else 1] = Ramp(to, to, ts, mm.params.mmf_ramp_wad_per_sec if mm.params else 0)
            elif t0 == T_SCHEDULED:
                side, frm, to, act, rate = abi_decode(["bool", "uint256", "uint256", "uint256", "uint256"], data)
                mm.ramps[0 if side else 1] = Ramp(frm, to, act, rate)
            elif t0 == T_RAISED:
                side, to = abi_decode(["bool", "uint256"], data)
                r0 = mm.ramps[0 if side else 1]
                mm.ramps[0 if side else 1] = Ramp(r0.from_wad, to, r0.activation_sec, r0.rate_wad_per_sec)

    def _apply_commit(self, b: int, ts: int, r: dict[str, Any], p: _Pending, ok: bool) -> None:
        try:
            o = self.mir.commit(p.account, MARKET, p.delta, ts, close_all=p.kind == "close")
            m_ok, reason = True, ""
        except MirrorRevert as err:
            m_ok, reason = False, err.error
        if not self._outcome(b, "order-commit", p.account, ok, m_ok, reason) or not ok:
            return
        self.n.commits += 1
        frm, exp = self.mir.order_times(p.account, MARKET)
        mine = (o.size_delta, o.close_all, o.acceptable_price_wad, frm, exp, o.fee_tokens)
        for data in _logs(r, T_COMMITTED):
            got = abi_decode(["int256", "bool", "uint256", "uint256", "uint256", "uint256"], data)
            if tuple(got) != mine:
                self._violate(b, "order-commit-event", p.account, f"chain {got} mirror {mine}")

    _apply_close = _apply_commit

    def _apply_settle(self, b: int, ts: int, r: dict[str, Any], p: _Pending, ok: bool) -> None:
        mir = self.mir
        rnd = self.rounds.get(p.round_id)
        o = mir.order(p.account, p.market)
        try:
            if rnd is None:
                raise MirrorRevert("RoundNotAvailable", p.round_id)
            fill = rnd.answer * 10 ** (18 - mir.markets[p.market].feeds["price"].decimals)
            realized, fee, impact = mir.settle(p.account, p.market, fill, rnd.updated_at, self.rounds.prev_time(rnd),
                                               ts, SETTLER, round_id=p.round_id)
            m_ok, reason = True, ""
        except MirrorRevert as err:
            m_ok, reason = False, err.error
        if not self._outcome(b, "order-settle", p.account, ok, m_ok, reason):
            return
        if not ok:
            self.n.settle_reverts += 1
            return
        assert rnd is not None and o is not None
        self.n.settled += 1
        self.n.block_settled += 1
        self.n.settle_delay_sec += ts - o.commit_sec
        settled = [abi_decode(["uint80", "uint256", "uint256"], d) for d in _logs(r, T_SETTLED)]
        want = (p.round_id, fill, o.fee_tokens)
        if [tuple(x) for x in settled] != [want]:
            self._violate(b, "order-settle-event", p.account, f"chain {settled} mirror {want}")
        for data in _logs(r, T_POSITION):
            vals = abi_decode(["int256", "int256", "uint256", "int256", "uint256", "int256"], data)
            if (vals[2], vals[3], vals[4], vals[5]) != (fill, realized, fee, impact):
                self._violate(b, "trade-amounts", p.account,
                              f"chain {vals[2:]} mirror {(fill, realized, fee, impact)}")

    def _apply_cancel(self, b: int, ts: int, r: dict[str, Any], p: _Pending, ok: bool) -> None:
        try:
            refund = self.mir.cancel_expired(p.account, p.market, ts)
            m_ok, reason = True, ""
        except MirrorRevert as err:
            m_ok, reason = False, err.error
        if self._outcome(b, "order-cancel", p.account, ok, m_ok, reason) and ok:
            self.n.cancelled += 1
            got = [abi_decode(["uint256"], d)[0] for d in _logs(r, T_CANCELLED)]
            if got != [refund]:
                self._violate(b, "order-cancel-event", p.account, f"chain {got} mirror {refund}")

    def _apply_flag(self, b: int, ts: int, r: dict[str, Any], p: _Pending, ok: bool) -> None:
        try:
            frm = self.mir.flag_liquidation(p.account, ts)
            m_ok, reason = True, ""
        except MirrorRevert as err:
            m_ok, reason = False, err.error
        if self._outcome(b, "flag-outcome", p.account, ok, m_ok, reason) and ok:
            self.n.flags += 1
            self.flag_pending[p.account] = p.sender
            got = [abi_decode(["uint256"], d)[0] for d in _logs(r, T_FLAGGED)]
            if got != [frm]:
                self._violate(b, "flag-event", p.account, f"chain {got} mirror {frm}")

    def _apply_liquidate(self, b: int, ts: int, r: dict[str, Any], p: _Pending, ok: bool) -> None:
        mir = self.mir
        try:
            res = mir.liquidate(p.account, p.market, ts, p.sender)
            m_ok, reason = True, ""
        except MirrorRevert as err:
            m_ok, reason = False, err.error
        if not self._outcome(b, "liquidation-outcome", p.account, ok, m_ok, reason) or not ok:
            return
        if not res.health_before.liquidatable:
            self._violate(b, "liquidated-healthy", p.account, "mirror finds the account healthy")
        self.n.block_liqs += 1
        self.n.block_liq_notional += res.notional_closed_usd_wad
        self.n.penalties += res.penalty_tokens
        self.n.accounts_liquidated.add(p.account)
        want = {T_LIQUIDATED: [(res.size_closed_wad, res.penalty_tokens, res.reward_tokens)],
                T_LIQ_SETTLED: [(res.realized_tokens, res.impact_tokens, res.remaining_size_wad)],
                T_BADDEBT: [(res.bad_debt_tokens,)] if res.bad_debt_tokens else []}
        got = {T_LIQUIDATED: [(x[0], x[3], x[4]) for x in (abi_decode(["int256", "uint256", "uint256", "uint256",
                                                                        "uint256"], d) for d in _logs(r, T_LIQUIDATED))],
               T_LIQ_SETTLED: [tuple(abi_decode(["int256", "int256", "int256"], d)) for d in _logs(r, T_LIQ_SETTLED)],
               T_BADDEBT: [(abi_decode(["uint256", "uint256", "uint256"], d)[0],) for d in _logs(r, T_BADDEBT)]}
        if got != want:
            self._violate(b, "liquidation-amounts", p.account, f"chain {list(got.values())} mirror {list(want.values())}")

    # ------------------------------------------------------------------ per-block health and series
    def _watch_health(self, b: int, ts: int, publishable: bool) -> None:
        """Accounts below maintenance (what liquidators see), and how long each stays there while
        liquidations can run (a liquidation needs a price published after its flag: the keeper up
        and the price not stale)."""
        mir = self.mir
        mm = mir.markets[MARKET]
        price_ok, _ = mm.feeds["price"].read(ts)
        now_liq: list[str] = []
        notional_of: dict[str, int] = {}
        self.unhealthy = 0
        cache: dict[Any, Any] = {}
        for a, acc in mir.accounts.items():
            if not acc.positions or not any(p.size for p in acc.positions.values()):
                self.unhealthy_streak.pop(a, None)
                continue
            if not price_ok:
                continue
            h = mir.maintenance_health(a, ts, cache)
            notional_of[a] = h.notional_usd_wad
            if not h.liquidatable:
                self.unhealthy_streak.pop(a, None)
                continue
            self.unhealthy += 1
            now_liq.append(a)
            s = self.unhealthy_streak.get(a, 0) + (1 if publishable else 0)
            self.unhealthy_streak[a] = s
            # +1: a liquidation is flagged first and settles at the next block's price.
            if s > self.max_unhealthy + self.liq.latency_blocks + 1:
                self._violate(b, "unhealthy-too-long", a, f"below maintenance for {s} blocks")
        now_liq.sort(key=lambda a: -notional_of[a])
        self.seen_liquidatable.append(now_liq)
        self.n.liquidations += self.n.block_liqs
        self.n.liquidated_notional += self.n.block_liq_notional
        self.peak_ins = max(self.peak_ins, mir.insurance)
        self.ins_drawdown = max(self.ins_drawdown, self.peak_ins - mir.insurance)

    def _record(self, b: int, ts: int, series: dict[str, list[float]]) -> None:
        mir = self.mir
        mm = mir.markets[MARKET]
        ok_p, p_wad = mm.feeds["price"].read(ts)
        ml, ms, mmf_l, mmf_s = self._max_leverage(ts)

        def feed(k: str) -> float:
            return float(mm.feeds[k].answer / 10 ** mm.feeds[k].decimals)

        row = {"price": float(self.sc.price[b]), "oracle_price": p_wad / WAD if ok_p else float("nan"),
               "vol": feed("volatility"), "depth_usd": feed("depth"), "skew": feed("skew"), "funding": feed("funding"),
               "max_lev_long": ml, "max_lev_short": ms, "mmf_long": mmf_l, "mmf_short": mmf_s,
               "liquidations": float(self.n.block_liqs), "liquidated_notional_usd": self.n.block_liq_notional / WAD,
               "insurance_usd": mir.insurance / TOKEN, "bad_debt_usd": mir.bad_debt_total / TOKEN,
               "oi_long": mm.oi_long / WAD, "oi_short": mm.oi_short / WAD, "unhealthy": float(self.unhealthy),
               "orders_settled": float(self.n.block_settled)}
        for k in SERIES:
            series[k].append(row[k])

    def _max_leverage(self, now: int) -> tuple[float, float, float, float]:
        """Max leverage (x) and maintenance fraction of a fresh small position, long and short."""
        mm = self.mir.markets[MARKET]
        ql, qs = mm.quote(True, 0, now), mm.quote(False, 0, now)
        if not (ql.price_ok and qs.price_ok):
            return (float("nan"),) * 4
        return (WAD / ql.imf_wad, WAD / qs.imf_wad, min(ql.mmf_base_wad, ql.max_mmf_wad) / WAD,
                min(qs.mmf_base_wad, qs.max_mmf_wad) / WAD)

    def _result(self, series: dict[str, list[float]], wall: float) -> RunResult:
        mir, sc, n = self.mir, self.sc, self.n
        mm = mir.markets[MARKET]
        vol = np.asarray(series["vol"])
        lev = (np.asarray(series["max_lev_long"]) + np.asarray(series["max_lev_short"])) / 2
        calm = vol < np.median(vol)
        end_ts = self.t_start + (sc.blocks - 1) * sc.block_sec
        wiped = 0
        for t in self.traders:
            eq = mir.health(t.address, end_ts).equity_usd_wad if mm.feeds["price"].read(end_ts)[0] else \
                mir.account(t.address).collateral * mir.token_scale
            if eq < 0.05 * self.deposit_tokens[t.address] * mir.token_scale:
                wiped += 1
        metrics = {
            "bad_debt_usd": mir.bad_debt_total / TOKEN,
            "bad_debt_socialized_usd": mir.bad_debt_socialized / TOKEN,
            "liquidations": float(n.liquidations),
            "accounts_liquidated": float(len(n.accounts_liquidated)),
            "liquidated_notional_usd": n.liquidated_notional / WAD,
            "liquidation_penalties_usd": n.penalties / TOKEN,
            "peak_liquidations_per_block": float(max(series["liquidations"]) if sc.blocks else 0),
            "insurance_drawdown_usd": self.ins_drawdown / TOKEN,
            "insurance_end_usd": mir.insurance / TOKEN,
            "mean_max_leverage": float(np.mean(lev)),
            "calm_mean_max_leverage": float(np.mean(lev[calm])) if calm.any() else float(np.mean(lev)),
            "stress_mean_max_leverage": float(np.mean(lev[~calm])) if (~calm).any() else float(np.mean(lev)),
            "accounts_wiped_out": float(wiped),
            "vault_pnl_usd": (mir.vault - self._vault0) / TOKEN if hasattr(self, "_vault0") else 0.0,
            "orders_committed": float(n.commits),
            "orders_settled": float(n.settled),
            "settlement_reverts": float(n.settle_reverts),
            "orders_expired": float(n.cancelled),
            "mean_settle_delay_sec": n.settle_delay_sec / n.settled if n.settled else 0.0,
            "settlement_fees_usd": mir.settlement_fees_paid / TOKEN,
            "on_demand_price_pushes": float(n.on_demand_pushes),
            "liquidation_flags": float(n.flags),
            "impact_pool_usd": mir.impact_pools / TOKEN,
            "tx_sent": float(self.tx_sent),
            "rpc_requests_dropped": float(self.chain.rpc.dropped),
            "keeper_restarts": float(self.keeper_restarts),
            "tx_per_s": self.tx_sent / wall if wall > 0 else 0.0,
        }
        head = self.chain.rpc.call("eth_getBlockByNumber", ["latest", False])
        return RunResult(self.kind, metrics, series, self.checks, [asdict(v) for v in self.violations], self.tx_sent,
                         wall, asdict(self.static) if self.static else None, head_hash=str(head["hash"]))

    # ------------------------------------------------------------------ chain reads
    def _eth_call(self, calls: list[tuple[str, str]]) -> list[bytes]:
        out = self.chain.rpc.batch([("eth_call", [{"to": to, "data": data}, "latest"]) for to, data in calls])
        return [bytes.fromhex(o[2:]) if isinstance(o, str) else b"" for o in out]

    def _match(self, b: int, meta: list[_Pending]) -> list[tuple[dict[str, Any], _Pending]]:
        """Receipts of the block just mined, paired with what was sent, in execution order.

        Each sender's transactions execute in nonce order, which is the order they were sent in.
        A transaction that was sent but is not in the block fails the run with a clear error.
        """
        # A retried evm_mine (its response lost) leaves an extra empty block on top: look back a few.
        head = int(self.chain.rpc.call("eth_blockNumber", []), 16)
        senders = {p.sender.lower() for p in meta}
        receipts: list[dict[str, Any]] = []
        for back in range(4):
            receipts = self.chain.rpc.call("eth_getBlockReceipts", [hex(max(0, head - back))]) or []
            if not meta or any(r["from"].lower() in senders for r in receipts):
                break
        by_sender: dict[str, list[dict[str, Any]]] = {}
        for r in sorted(receipts, key=lambda r: int(r["transactionIndex"], 16)):
            by_sender.setdefault(r["from"].lower(), []).append(r)
        out: list[tuple[int, dict[str, Any], _Pending]] = []
        pos: dict[str, int] = {}
        for p in meta:
            key = p.sender.lower()
            i = pos.get(key, 0)
            rs = by_sender.get(key, [])
            if i >= len(rs):
                raise ChainError(f"block {b}: a {p.kind} transaction from {p.sender} was sent but not mined "
                                 f"(dropped by the node?); {len(rs)} of its transactions are in the block")
            pos[key] = i + 1
            out.append((int(rs[i]["transactionIndex"], 16), rs[i], p))
        out.sort(key=lambda x: x[0])
        return [(r, p) for _, r, p in out]

    def _bucket_calls(self) -> list[tuple[str, str]]:
        d = self.dep
        e = str(d.engine.address)
        return [(str(d.usd.address), self.enc_usd("balanceOf", [e]))] + [
            (e, self.enc_engine(fn, [])) for fn in
            ("vaultBalance", "insuranceFund", "protocolFees", "badDebtTotal", "netDeposits", "orderEscrow",
             "impactPools")] + [(e, self.enc_engine("marketBook", [MARKET])),
                                (e, self.enc_engine("fundingState", [MARKET]))]

    def _check_buckets(self, b: int, raw: list[bytes]) -> None:
        mir = self.mir
        mm = mir.markets[MARKET]
        bal, vault, ins, fees, bad, net, escrow, pools = (abi_decode(["int256"], x)[0] for x in raw[:8])
        book = tuple(abi_decode(["uint256", "uint256"], raw[8]))
        funding = tuple(abi_decode(["int256", "int256", "uint256"], raw[9]))
        if not hasattr(self, "_vault0"):
            self._vault0 = vault
        mine = {"vault": mir.vault, "insurance": mir.insurance, "fees": mir.fees, "bad_debt": mir.bad_debt_total,
                "net_deposits": mir.net_deposits, "order_escrow": mir.order_escrow, "impact_pools": mir.impact_pools,
                "market_book": (mm.impact_pool, mm.last_price_wad),
                "funding_state": (mm.funding_index, mm.last_rate, mm.last_accrual)}
        chain = {"vault": vault, "insurance": ins, "fees": fees, "bad_debt": bad, "net_deposits": net,
                 "order_escrow": escrow, "impact_pools": pools, "market_book": book, "funding_state": funding}
        self.checks += 2
        if mine != chain:
            diff = {k: (chain[k], mine[k]) for k in chain if chain[k] != mine[k]}
            self._violate(b, "buckets", "", f"(chain, mirror): {diff}")
        total = mir.token_balance()
        if bal != total or bal != net:
            self._violate(b, "conservation", "", f"engine holds {bal}, buckets sum {total}, net deposits {net}")

    def _final_check(self, b: int) -> None:
        """Every trader's collateral, position, pending order and liquidation flag, chain vs mirror."""
        e, mir = self.dep.engine, self.mir
        calls: list[tuple[str, str]] = []
        for t in self.traders:
            for fn, args in (("collateralOf", [t.address]), ("position", [t.address, MARKET]),
                             ("order", [t.address, MARKET]), ("flaggedAt", [t.address])):
                calls.append((str(e.address), self.enc_engine(fn, args)))
        raw = self._eth_call(calls)
        for i, t in enumerate(self.traders):
            coll = abi_decode(["int256"], raw[4 * i])[0]
            size, basis, _fidx, slip = abi_decode(["int128", "int128", "int128", "uint64"], raw[4 * i + 1])
            order = tuple(abi_decode(["int128", "uint128", "uint64", "uint64", "bool"], raw[4 * i + 2]))
            flagged = abi_decode(["uint256"], raw[4 * i + 3])[0]
            acc = mir.account(t.address)
            pos = acc.positions.get(MARKET)
            o = mir.order(t.address, MARKET)
            mine = (acc.collateral, pos.size if pos else 0, pos.basis if pos else 0, pos.slip_snap if pos else 0,
                    (o.size_delta, o.acceptable_price_wad, o.commit_sec, o.fee_tokens, o.close_all) if o
                    else (0, 0, 0, 0, False), mir.flagged_at.get(t.address, 0))
            got = (coll, size, basis, slip, order, flagged)
            self.checks += 1
            if got != mine:
                self._violate(b, "final-account", t.address, f"chain {got} mirror {mine}")


def calm_fractions_from_run(series: dict[str, list[float]]) -> StaticFractions:
    """The static cap equal to a dynamic run's calm-period leverage (``ballast.calm.calm_fractions``
    on the run's series)."""
    return calm_fractions(series["vol"], series["max_lev_long"], series["max_lev_short"], series["mmf_long"],
                          series["mmf_short"])


def calm_static_fractions(scenario: ScenarioPath, config: Config, keeper_mode: VolMode = "trailing") -> StaticFractions:
    """The dynamic model's calm-period fractions for a scenario: the static cap whose leverage equals
    the dynamic model's mean max leverage over the blocks whose volatility is below the median
    (IMF = 1 / mean(1 / IMF), MMF likewise), for a small position without crowding or funding."""
    m = config.market(MARKET)
    fm = FeedModel(scenario, keeper_mode, base_depth_usd=m.initial["depth"])
    vol = fm.vol
    calm = np.flatnonzero(calm_mask(vol))
    imfs, mmfs = [], []
    for b in calm:
        tg = fm.targets(int(b), 0.0, 0.0)
        for is_long in (True, False):
            x = RiskInputs(to_wad(tg["volatility"]), to_wad(tg["skew"]), to_wad(tg["depth"]), 0, 0, 0, 0,
                           to_wad(tg["price"]), is_long)
            f = compute(m.params, x)
            imfs.append(f.imf_wad / WAD)
            mmfs.append(f.mmf_base_wad / WAD)
    imf = round(1.0 / float(np.mean(1.0 / np.asarray(imfs))), 6)
    mmf = round(1.0 / float(np.mean(1.0 / np.asarray(mmfs))), 6)
    return StaticFractions(imf, min(mmf, imf * 0.9))


def run_one(kind: ControllerKind, scenario: ScenarioPath, traders: list[Trader], config: Config, *,
            static: StaticFractions | None = None, keeper_mode: VolMode = "trailing",
            liquidators: LiquidatorSpec = LiquidatorSpec(), fork_url: str | None = None,
            rpc_drop_rate: float = 0.0, keeper_down: tuple[int, int] | None = None, chain_salt: int = 0,
            progress: Callable[[int, int, dict[str, float]], None] | None = None,
            depth_mode: DepthMode = "trailing") -> RunResult:
    """Start a chain (or fork ``fork_url``), run, stop the chain (also on error or Ctrl-C)."""
    with Anvil(fork_url=fork_url, timestamp=scenario.start_utc - 3_600,
               extra_args=["--base-fee", "0", "--gas-price", "0", "--order", "fifo", "--no-mining"] if not fork_url
               else ["--base-fee", "0", "--gas-price", "0", "--order", "fifo"]) as node:
        chain = Chain(node.url)
        if rpc_drop_rate:
            chain.rpc = Rpc(node.url, drop_rate=rpc_drop_rate, seed=7)
        if not fork_url:
            # Setup blocks (deploys, funding) get timestamps that do not depend on the wall clock, so
            # block hashes, and the ramp jitter drawn from them, are the same on every identical run.
            chain.rpc.call("anvil_setBlockTimestampInterval", [1])
        if chain_salt:
            chain.rpc.call("anvil_mine", [hex(chain_salt)])
        chain.set_automine(True)
        run = LabRun(chain, scenario, traders, config, kind, static=static, keeper_mode=keeper_mode,
                     liquidators=liquidators, keeper_down=keeper_down, progress=progress, depth_mode=depth_mode)
        return run.run()


__all__ = ["LabRun", "RunResult", "calm_fractions_from_run", "calm_static_fractions", "load_config", "run_one"]
