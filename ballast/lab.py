"""The crash stress lab: replays a scenario block by block on an embedded Anvil with a population
of traders and liquidators, mirrors every transaction in Python, and verifies the chain.

Per block: the oracle keeper pushes the feeds that are due (and pokes the controller), liquidators
liquidate what they saw under water ``latency`` blocks ago, traders open, close and cut positions;
then the block is mined and every receipt is applied, in order, to the exact engine mirror
(``ballast.mirror``). The lab fails the run on any disagreement between chain and mirror, on a
liquidation of an account the mirror finds healthy, on an account left below maintenance more than
``max_unhealthy_blocks`` blocks while liquidations can run, and on any token-conservation gap.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Literal

import numpy as np
from eth_abi.abi import decode as abi_decode
from web3 import Web3

from ballast._typing import WAD
from ballast.chain import Anvil, Chain, Encoder, Rpc
from ballast.config import FEED_KINDS, Config, StaticFractions, load_config, to_wad
from ballast.deploy import ControllerKind, Deployment, deploy
from ballast.errors import ChainError, ValidationError, VerificationError
from ballast.keeper import FeedModel, OracleKeeper, VolMode
from ballast.mirror import EngineMirror, Feed, MarketMirror, MirrorRevert
from ballast.model import Ramp, RiskInputs, compute, notional
from ballast.population import LiquidatorSpec, Trader, liquidator_address
from ballast.scenarios import ScenarioPath

MARKET = 0
TOKEN = 10**6
GAS = hex(3_000_000)
FUND_PER_BLOCK = 500
"""Deposits mined per block while funding the population before a scenario."""


def _topic(sig: str) -> str:
    return "0x" + Web3.keccak(text=sig).hex().removeprefix("0x")


T_POSITION = _topic("PositionModified(address,uint256,int256,int256,uint256,int256,uint256,uint256)")
T_LIQUIDATED = _topic("Liquidated(address,uint256,address,int256,uint256,uint256,uint256,uint256)")
T_BADDEBT = _topic("BadDebt(address,uint256,uint256,uint256)")
T_LOOSENED = _topic("MaintenanceLoosened(uint256,bool,uint256,uint256)")
T_SCHEDULED = _topic("MaintenanceTighteningScheduled(uint256,bool,uint256,uint256,uint256,uint256)")
T_RAISED = _topic("MaintenanceTargetRaised(uint256,bool,uint256)")


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
    feed: str = ""
    answer: int = 0


class LabRun:
    """One scenario x population x controller run on its own chain."""

    def __init__(self, chain: Chain, scenario: ScenarioPath, traders: list[Trader], config: Config,
                 kind: ControllerKind, *, static: StaticFractions | None = None, keeper_mode: VolMode = "trailing",
                 liquidators: LiquidatorSpec = LiquidatorSpec(), max_unhealthy_blocks: int = 5,
                 keeper_down: tuple[int, int] | None = None,
                 progress: Callable[[int, int, dict[str, float]], None] | None = None) -> None:
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
        self.model = FeedModel(scenario, keeper_mode, base_depth_usd=config.market(MARKET).initial["depth"])
        self.keeper = OracleKeeper(decimals=config.market(MARKET).feed_decimals)
        self.violations: list[Violation] = []
        self._nonces: dict[str, int] = {}
        self.checks = 0
        self.tx_sent = 0

    # ------------------------------------------------------------------ setup
    def _setup(self) -> None:
        ch = self.chain
        overrides = {MARKET: self.static} if self.static else None
        self.dep: Deployment = deploy(ch, self.cfg, kind=self.kind, static_overrides=overrides)
        d = self.dep
        self.enc_engine = Encoder(d.engine.abi)
        self.enc_ctrl = Encoder(d.controller.abi)
        self.enc_feed = Encoder(d.feeds[MARKET]["price"].abi)
        self.enc_usd = Encoder(d.usd.abi)
        self.admin = d.admin
        e = d.engine
        m = self.cfg.market(MARKET)
        mir = EngineMirror(e.functions.tradingFeeWad().call(), e.functions.feeInsuranceShareWad().call(),
                           e.functions.liquidatorShareWad().call(), e.functions.liqTargetRatioWad().call(),
                           e.functions.tokenScale().call())
        feeds = {}
        for i, k in enumerate(FEED_KINDS):
            f = d.feeds[MARKET][k]
            _, ans, _, upd, _ = f.functions.latestRoundData().call()
            c = d.controller.functions.feedConfig(MARKET, i).call()
            feeds[k] = Feed(ans, m.feed_decimals, upd, c[1], c[2], c[3])
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
        for t in self.traders:  # fresh addresses: nonce 0
            self._nonces[t.address] = 0
        for i in range(self.liq.count):
            self._nonces[liquidator_address(i)] = 0
        # Fund the traders before the scenario starts: the admin mints and deposits for them, in
        # blocks of at most FUND_PER_BLOCK deposits (a node mines one huge block slowly).
        self.deposit_tokens = {t.address: int(t.collateral_usd * TOKEN) for t in self.traders}
        ch.transact(d.usd.functions.mint(self.admin, sum(self.deposit_tokens.values())), self.admin)
        ch.set_automine(False)
        for i in range(0, len(self.traders), FUND_PER_BLOCK):
            group = self.traders[i:i + FUND_PER_BLOCK]
            calls = [self._tx(self.admin, e.address,
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
            mir.deposit(a, amount)

    def _tx(self, sender: str, to: str, data: str) -> tuple[str, list[Any]]:
        """An unsigned transaction from an impersonated sender, with a locally tracked nonce (a
        batch of several transactions from one sender would otherwise race for the same nonce)."""
        nonce = self._nonces.get(sender)
        if nonce is None:
            nonce = int(self.chain.rpc.call("eth_getTransactionCount", [sender, "pending"]), 16)
        self._nonces[sender] = nonce + 1
        return ("eth_sendTransaction", [{"from": sender, "to": to, "data": data, "gas": GAS, "gasPrice": "0x0",
                                         "nonce": hex(nonce)}])

    # ------------------------------------------------------------------ run
    def run(self) -> RunResult:
        t0 = time.monotonic()
        self._setup()
        sc, mir, ch, d = self.sc, self.mir, self.chain, self.dep
        # Block times follow the scenario; on a fork whose clock is past the scenario, shift it.
        t_start = max(sc.start_utc, ch.latest_timestamp() + sc.block_sec)
        e, ctrl = d.engine, d.controller
        feeds = d.feeds[MARKET]
        n = sc.blocks
        series: dict[str, list[float]] = {k: [] for k in (
            "price", "oracle_price", "vol", "max_lev_long", "max_lev_short", "liquidations", "liquidated_notional_usd",
            "insurance_usd", "bad_debt_usd", "oi_long", "oi_short", "unhealthy", "depth_usd", "skew", "funding",
            "mmf_long", "mmf_short")}
        state = {t.address: _TraderState() for t in self.traders}
        unhealthy_streak: dict[str, int] = {}
        seen_liquidatable: list[list[str]] = []
        liq_count = 0
        liq_notional = 0
        accounts_liquidated: set[str] = set()
        peak_ins = self.insurance0
        ins_drawdown = 0
        for b in range(n):
            ts = t_start + b * sc.block_sec
            mm = mir.markets[MARKET]
            sends: list[tuple[str, list[Any]]] = []
            meta: list[_Pending] = []
            # 1. oracle keeper
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
            pushes = {} if down else self.keeper.decide(ts, targets, onchain, stale_price=bool(sc.oracle_stale[b]))
            for k, ans in pushes.items():
                sends.append(self._tx(self.admin, feeds[k].address, self.enc_feed("transmit", [ans])))
                meta.append(_Pending("feed", sender=self.admin, feed=k, answer=ans))
            if self.kind == "dynamic" and not down and ({"volatility", "skew"} & set(pushes) or b == 0):
                sends.append(self._tx(self.admin, ctrl.address, self.enc_ctrl("poke", [MARKET])))
                meta.append(_Pending("poke", sender=self.admin))
            # 2. liquidators act on what they saw `latency` blocks ago
            lb = b - self.liq.latency_blocks
            if lb >= 0 and lb < len(seen_liquidatable):
                cap = self.liq.count * self.liq.max_per_block
                for i, acct in enumerate(seen_liquidatable[lb][:cap]):
                    liq = liquidator_address(i % self.liq.count)
                    sends.append(self._tx(liq, e.address, self.enc_engine("liquidate", [acct, MARKET])))
                    meta.append(_Pending("liquidate", sender=liq, account=acct))
            # 3. traders (decisions from the last mined state)
            prev_now = ts  # decisions use the last mined state (this block's pushes are not applied yet)
            for t in self.traders:
                stt = state[t.address]
                acc = mir.accounts.get(t.address)
                pos = acc.positions.get(MARKET) if acc else None
                size = pos.size if pos else 0
                if size != 0:
                    stt.open = True
                sess = t.sessions[stt.session] if stt.session < len(t.sessions) else None
                if size == 0 and stt.open:
                    stt.open = False  # closed or liquidated: move to the next session
                    stt.session += 1
                    continue
                if size == 0 and sess and sess[0] <= b < sess[1]:
                    delta = self._open_size(t, prev_now)
                    if delta:
                        sends.append(self._tx(t.address, e.address, self.enc_engine("trade", [MARKET, delta, 0])))
                        meta.append(_Pending("trade", sender=t.address, account=t.address, delta=delta))
                        stt.entry_vol = float(self.model.vol[max(0, b - 1)])
                        stt.cut = False
                elif size != 0 and sess and b >= sess[1]:
                    sends.append(self._tx(t.address, e.address, self.enc_engine("closePosition", [MARKET, 0])))
                    meta.append(_Pending("close", sender=t.address, account=t.address))
                elif (size != 0 and t.anticipatory and not stt.cut
                      and self.model.vol[max(0, b - 1)] > 1.5 * stt.entry_vol > 0):
                    cut = -(size // 2)
                    if cut:
                        sends.append(self._tx(t.address, e.address, self.enc_engine("trade", [MARKET, cut, 0])))
                        meta.append(_Pending("trade", sender=t.address, account=t.address, delta=cut))
                        stt.cut = True
            # 4. mine and apply receipts in order
            if sends:
                # Responses are not needed: receipts are matched to what was sent by sender and nonce,
                # so a lost response (or a resend after one) changes nothing.
                ch.rpc.batch(sends)
            ch.mine(ts)
            self.tx_sent += len(sends)
            bucket_calls = self._bucket_calls()
            bucket_raw = ch.rpc.batch([("eth_call", [{"to": to, "data": data}, "latest"]) for to, data in bucket_calls])
            ordered = self._match(b, meta)
            blk_liqs = 0
            blk_liq_notional = 0
            for r, p in ordered:
                ok = r["status"] == "0x1"
                res = self._apply(b, ts, r, p, ok)
                if p.kind == "liquidate" and ok and res is not None:
                    blk_liqs += 1
                    blk_liq_notional += res
                    accounts_liquidated.add(p.account)
            liq_count += blk_liqs
            liq_notional += blk_liq_notional
            # 5. verify the buckets against the chain (exact)
            self._check_buckets(b, [bytes.fromhex(x[2:]) if isinstance(x, str) else b"" for x in bucket_raw])
            # 6. health of every account with a position, streaks, metrics
            price_ok, _ = mm.feeds["price"].read(ts)
            now_liq: list[str] = []
            notional_of: dict[str, int] = {}
            unhealthy = 0
            cache: dict[tuple[int, bool], tuple[int, int, int, int]] = {}
            for a, acc in mir.accounts.items():
                if not acc.positions or not any(p.size for p in acc.positions.values()):
                    unhealthy_streak.pop(a, None)
                    continue
                if not price_ok:
                    continue
                h = mir.maintenance_health(a, ts, cache)
                notional_of[a] = h.notional_usd_wad
                if h.liquidatable:
                    unhealthy += 1
                    now_liq.append(a)
                    s = unhealthy_streak.get(a, 0) + 1
                    unhealthy_streak[a] = s
                    if s > self.max_unhealthy + self.liq.latency_blocks:
                        self._violate(b, "unhealthy-too-long", a, f"below maintenance for {s} blocks")
                else:
                    unhealthy_streak.pop(a, None)
            now_liq.sort(key=lambda a: -notional_of[a])
            seen_liquidatable.append(now_liq)
            peak_ins = max(peak_ins, mir.insurance)
            ins_drawdown = max(ins_drawdown, peak_ins - mir.insurance)
            ok_p, p_wad = mm.feeds["price"].read(ts)
            ml, ms, mmf_l, mmf_s = self._max_leverage(ts)
            series["price"].append(float(sc.price[b]))
            series["oracle_price"].append(p_wad / WAD if ok_p else float("nan"))
            series["vol"].append(mm.feeds["volatility"].answer / 10 ** mm.feeds["volatility"].decimals)
            series["depth_usd"].append(mm.feeds["depth"].answer / 10 ** mm.feeds["depth"].decimals)
            series["skew"].append(mm.feeds["skew"].answer / 10 ** mm.feeds["skew"].decimals)
            series["funding"].append(mm.feeds["funding"].answer / 10 ** mm.feeds["funding"].decimals)
            series["max_lev_long"].append(ml)
            series["max_lev_short"].append(ms)
            series["mmf_long"].append(mmf_l)
            series["mmf_short"].append(mmf_s)
            series["liquidations"].append(blk_liqs)
            series["liquidated_notional_usd"].append(blk_liq_notional / WAD)
            series["insurance_usd"].append(mir.insurance / TOKEN)
            series["bad_debt_usd"].append(mir.bad_debt_total / TOKEN)
            series["oi_long"].append(mm.oi_long / WAD)
            series["oi_short"].append(mm.oi_short / WAD)
            series["unhealthy"].append(unhealthy)
            if self.progress:
                self.progress(b + 1, n, {"liquidations": liq_count, "bad_debt_usd": mir.bad_debt_total / TOKEN,
                                         "tx": self.tx_sent, "sec": time.monotonic() - t0})
        self._final_check(n)
        wall = time.monotonic() - t0
        vol = np.asarray(series["vol"])
        lev = (np.asarray(series["max_lev_long"]) + np.asarray(series["max_lev_short"])) / 2
        calm = vol < np.median(vol)
        wiped = 0
        end_ts = t_start + (n - 1) * sc.block_sec
        for t in self.traders:
            eq = mir.health(t.address, end_ts).equity_usd_wad if mm.feeds["price"].read(end_ts)[0] else \
                mir.account(t.address).collateral * mir.token_scale
            if eq < 0.05 * self.deposit_tokens[t.address] * mir.token_scale:
                wiped += 1
        metrics = {
            "bad_debt_usd": mir.bad_debt_total / TOKEN,
            "bad_debt_socialized_usd": mir.bad_debt_socialized / TOKEN,
            "liquidations": float(liq_count),
            "accounts_liquidated": float(len(accounts_liquidated)),
            "liquidated_notional_usd": liq_notional / WAD,
            "peak_liquidations_per_block": float(max(series["liquidations"]) if n else 0),
            "insurance_drawdown_usd": ins_drawdown / TOKEN,
            "insurance_end_usd": mir.insurance / TOKEN,
            "mean_max_leverage": float(np.mean(lev)),
            "calm_mean_max_leverage": float(np.mean(lev[calm])) if calm.any() else float(np.mean(lev)),
            "stress_mean_max_leverage": float(np.mean(lev[~calm])) if (~calm).any() else float(np.mean(lev)),
            "accounts_wiped_out": float(wiped),
            "vault_pnl_usd": (mir.vault - self._vault0) / TOKEN if hasattr(self, "_vault0") else 0.0,
            "tx_sent": float(self.tx_sent),
            "rpc_requests_dropped": float(self.chain.rpc.dropped),
            "keeper_restarts": float(self.keeper_restarts),
            "tx_per_s": self.tx_sent / wall if wall > 0 else 0.0,
        }
        head = self.chain.rpc.call("eth_getBlockByNumber", ["latest", False])
        return RunResult(self.kind, metrics, series, self.checks, [asdict(v) for v in self.violations], self.tx_sent,
                         wall, asdict(self.static) if self.static else None, head_hash=str(head["hash"]))

    # ------------------------------------------------------------------ helpers
    def _open_size(self, t: Trader, now: int) -> int:
        """Base-unit size for the trader's chosen fraction of the live maximum leverage."""
        mm = self.mir.markets[MARKET]
        ok, price = mm.feeds["price"].read(now)
        if not ok:
            return 0
        eq = self.mir.health(t.address, now).equity_usd_wad
        if eq < 10 * WAD:
            return 0
        is_long = t.side > 0
        try:
            q = mm.quote(is_long, 0, 0, now)
            size = int(eq * t.lev_frac * WAD / q.imf_wad * WAD / price)
            q = mm.quote(is_long, size, size, now)
            size = int(eq * t.lev_frac * WAD / (q.imf_wad + q.impact_wad + 2 * self.mir.trading_fee_wad) * WAD / price)
        except MirrorRevert:
            return 0
        return size if is_long else -size

    def _max_leverage(self, now: int) -> tuple[float, float, float, float]:
        """Max leverage (x) and maintenance fraction of a fresh small position, long and short."""
        mm = self.mir.markets[MARKET]
        try:
            ql, qs = mm.quote(True, 0, 0, now), mm.quote(False, 0, 0, now)
        except MirrorRevert:
            return (float("nan"),) * 4
        return (WAD / ql.imf_wad, WAD / qs.imf_wad, min(ql.mmf_base_wad, ql.max_mmf_wad) / WAD,
                min(qs.mmf_base_wad, qs.max_mmf_wad) / WAD)

    def _violate(self, b: int, check: str, account: str, detail: str) -> None:
        self.violations.append(Violation(b, check, account, detail))

    def _apply(self, b: int, ts: int, r: dict[str, Any], p: _Pending, ok: bool) -> int | None:
        """Apply one mined transaction to the mirror; compare. Returns liquidated notional (WAD)."""
        mir = self.mir
        mm = mir.markets[MARKET]
        logs = r.get("logs", [])
        self.checks += 1
        if p.kind == "feed":
            if ok:
                mm.feeds[p.feed].answer = p.answer
                mm.feeds[p.feed].updated_at = ts
            else:
                self._violate(b, "feed-push", self.admin, f"{p.feed} transmit reverted")
            return None
        if p.kind == "poke":
            expect_ok = mm.feeds["volatility"].read(ts)[0] and mm.feeds["skew"].read(ts)[0]
            if ok != expect_ok:
                self._violate(b, "poke", self.admin, f"poke {'succeeded' if ok else 'reverted'}, mirror expects "
                                                      f"{'success' if expect_ok else 'RiskFeedInvalid'}")
            if not ok:
                return None
            for lg in logs:
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
            return None
        if p.kind in ("trade", "close"):
            acc = mir.account(p.account)
            pos = acc.positions.get(MARKET)
            delta = p.delta if p.kind == "trade" else -(pos.size if pos else 0)
            try:
                if delta == 0:
                    raise MirrorRevert("NoPosition")
                realized, fee, impact = mir.trade(p.account, MARKET, delta, ts)
                m_ok = True
            except MirrorRevert as err:
                m_ok, reason = False, err.error
            if m_ok != ok:
                self._violate(b, "trade-outcome", p.account,
                              f"chain {'ok' if ok else 'reverted'}, mirror {'ok' if m_ok else 'reverted: ' + reason}")
                return None
            if ok:
                for lg in logs:
                    if lg["topics"][0] == T_POSITION:
                        vals = abi_decode(["int256", "int256", "uint256", "int256", "uint256", "uint256"],
                                          bytes.fromhex(lg["data"][2:]))
                        if (vals[3], vals[4], vals[5]) != (realized, fee, impact):
                            self._violate(b, "trade-amounts", p.account, f"chain {vals[3:]} mirror {(realized, fee, impact)}")
            return None
        if p.kind == "liquidate":
            try:
                res = mir.liquidate(p.account, MARKET, ts)
                m_ok = True
            except MirrorRevert as err:
                m_ok, reason = False, err.error
            if m_ok != ok:
                self._violate(b, "liquidation-outcome", p.account,
                              f"chain {'ok' if ok else 'reverted'}, mirror {'ok' if m_ok else 'reverted: ' + reason}")
                return None
            if not ok:
                return None
            if not res.health_before.liquidatable:
                self._violate(b, "liquidated-healthy", p.account, "mirror finds the account healthy")
            for lg in logs:
                t0 = lg["topics"][0]
                data = bytes.fromhex(lg["data"][2:])
                if t0 == T_LIQUIDATED:
                    size, ntl, _price, pen, rew = abi_decode(["int256", "uint256", "uint256", "uint256", "uint256"], data)
                    if (size, pen, rew) != (res.size_closed_wad, res.penalty_tokens, res.reward_tokens):
                        self._violate(b, "liquidation-amounts", p.account,
                                      f"chain {(size, pen, rew)} mirror {(res.size_closed_wad, res.penalty_tokens, res.reward_tokens)}")
                elif t0 == T_BADDEBT:
                    amount = abi_decode(["uint256", "uint256", "uint256"], data)[0]
                    if amount != res.bad_debt_tokens:
                        self._violate(b, "bad-debt", p.account, f"chain {amount} mirror {res.bad_debt_tokens}")
            return res.notional_closed_usd_wad
        return None

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
        e = d.engine
        return [(str(d.usd.address), self.enc_usd("balanceOf", [e.address]))] + [
            (str(e.address), self.enc_engine(fn, [])) for fn in
            ("vaultBalance", "insuranceFund", "protocolFees", "badDebtTotal", "netDeposits")]

    def _check_buckets(self, b: int, raw: list[bytes]) -> None:
        mir = self.mir
        bal, vault, ins, fees, bad, net = (abi_decode(["int256"], x)[0] for x in raw)
        if not hasattr(self, "_vault0"):
            self._vault0 = vault
        mine = {"vault": mir.vault, "insurance": mir.insurance, "fees": mir.fees, "bad_debt": mir.bad_debt_total,
                "net_deposits": mir.net_deposits}
        chain = {"vault": vault, "insurance": ins, "fees": fees, "bad_debt": bad, "net_deposits": net}
        self.checks += 2
        if mine != chain:
            self._violate(b, "buckets", "", f"chain {chain} mirror {mine}")
        total = mir.sum_collateral() + mir.vault + mir.insurance + mir.fees
        if bal != total or bal != net:
            self._violate(b, "conservation", "", f"engine holds {bal}, buckets sum {total}, net deposits {net}")

    def _final_check(self, b: int) -> None:
        e, mir = self.dep.engine, self.mir
        calls: list[tuple[str, str]] = []
        for t in self.traders:
            calls.append((str(e.address), self.enc_engine("collateralOf", [t.address])))
            calls.append((str(e.address), self.enc_engine("position", [t.address, MARKET])))
        raw = self._eth_call(calls)
        for i, t in enumerate(self.traders):
            coll = abi_decode(["int256"], raw[2 * i])[0]
            size, basis, fidx, slip = abi_decode(["int128", "int128", "int128", "uint64"], raw[2 * i + 1])
            acc = mir.account(t.address)
            pos = acc.positions.get(MARKET)
            mine = (acc.collateral, pos.size if pos else 0, pos.basis if pos else 0, pos.slip_snap if pos else 0)
            self.checks += 1
            if (coll, size, basis, slip) != mine:
                self._violate(b, "final-account", t.address, f"chain {(coll, size, basis, slip)} mirror {mine}")


def calm_fractions_from_run(series: dict[str, list[float]]) -> StaticFractions:
    """The static cap equal to a dynamic run's calm-period leverage: over the blocks whose
    volatility feed is below the run's median, IMF = 1 / mean max leverage (both sides) and MMF =
    1 / mean(1 / maintenance fraction)."""
    vol = np.asarray(series["vol"], dtype=float)
    lev = (np.asarray(series["max_lev_long"], dtype=float) + np.asarray(series["max_lev_short"], dtype=float)) / 2
    mmf = np.r_[np.asarray(series["mmf_long"], dtype=float), np.asarray(series["mmf_short"], dtype=float)]
    calm = vol < np.median(vol)
    calm2 = np.r_[calm, calm]
    ok = np.isfinite(lev) & calm
    imf = round(1.0 / float(np.mean(lev[ok])), 6)
    mmf_c = round(1.0 / float(np.mean(1.0 / mmf[calm2 & np.isfinite(mmf)])), 6)
    return StaticFractions(imf, min(mmf_c, round(imf * 0.9, 6)))


def calm_static_fractions(scenario: ScenarioPath, config: Config, keeper_mode: VolMode = "trailing") -> StaticFractions:
    """The dynamic model's calm-period fractions for a scenario: the static cap whose leverage equals
    the dynamic model's mean max leverage over the blocks whose volatility is below the median
    (IMF = 1 / mean(1 / IMF), MMF likewise), for a small position without crowding or funding."""
    m = config.market(MARKET)
    fm = FeedModel(scenario, keeper_mode, base_depth_usd=m.initial["depth"])
    vol = fm.vol
    calm = np.flatnonzero(vol < np.median(vol))
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
            progress: Callable[[int, int, dict[str, float]], None] | None = None) -> RunResult:
    """Start a chain (or fork ``fork_url``), run, stop the chain (also on error or Ctrl-C)."""
    with Anvil(fork_url=fork_url, timestamp=scenario.start_utc - 3_600,
               extra_args=["--base-fee", "0", "--gas-price", "0", "--no-mining"] if not fork_url else
               ["--base-fee", "0", "--gas-price", "0"]) as node:
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
                     liquidators=liquidators, keeper_down=keeper_down, progress=progress)
        return run.run()


__all__ = ["LabRun", "RunResult", "run_one", "calm_static_fractions", "load_config", "field", "math", "sys",
           "notional", "ValidationError", "Literal"]
