"""Deploy Ballast (mock USD, feeds, controller, engine, risk pusher, lens) on a chain through web3.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from web3.contract import Contract

from ballast.chain import Chain
from ballast.config import FEED_KINDS, Config, MarketConfig, StaticFractions, to_wad
from ballast.model import RiskParams
from ballast.riskreport import REPORT_KINDS, pusher_args, report_input

ControllerKind = Literal["dynamic", "static_calm", "static_conservative"]
TOKEN_DECIMALS = 6


@dataclass
class Deployment:
    """Addresses and contract handles of one deployed system."""

    chain: Chain
    config: Config
    kind: ControllerKind
    admin: str
    usd: Contract
    controller: Contract
    engine: Contract
    pusher: Contract
    """``RiskPusher``: the keeper's one transaction per round (price pushes and risk reports, then
    poke and funding accrual of each market); a transmitter of every price feed and a reporter."""
    lens: Contract
    """``MarginLens``: read-only order preview, maximum order size and liquidation price."""
    feeds: dict[int, dict[str, Contract]] = field(default_factory=dict)
    """Per market, per kind: the price's ``MockAggregator`` and the risk inputs' ``ReportFeed``
    adapters (read-only aggregator views of the controller's risk report)."""
    static: dict[int, StaticFractions] = field(default_factory=dict)
    reported: frozenset[str] = frozenset(REPORT_KINDS)
    """Kinds read from the controller's risk report (written with ``submitReport``)."""

    def feed_calls(self, market_id: int, answers: dict[str, int]) -> list[Any]:
        """The admin's calls that publish answers (feed decimals): each aggregator's ``transmit``
        (the price), then one ``submitReport`` with the risk inputs."""
        addrs, ans, reports = pusher_args(self.feeds, self.reported, {market_id: answers})
        calls = [self.chain.at("MockAggregator", a).functions.transmit(v) for a, v in zip(addrs, ans)]
        return calls + [self.controller.functions.submitReport(*r) for r in reports]

    def set_feeds(self, market_id: int, answers: dict[str, int]) -> None:
        """Publish answers (feed decimals) as the admin (``feed_calls``), one transaction each."""
        for fn in self.feed_calls(market_id, answers):
            self.chain.transact(fn, self.admin)

    def addresses(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "admin": self.admin,
            "usd": self.usd.address,
            "controller": self.controller.address,
            "engine": self.engine.address,
            "pusher": self.pusher.address,
            "lens": self.lens.address,
            "feeds": {str(m): {k: c.address for k, c in f.items()} for m, f in self.feeds.items()},
        }


def feed_config_tuples(m: MarketConfig, feeds: dict[str, Contract]) -> list[tuple[str, int, int, int]]:
    out: list[tuple[str, int, int, int]] = []
    for k in FEED_KINDS:
        lo, hi = m.bounds_wad(k)
        out.append((feeds[k].address, m.heartbeat_sec, lo, hi))
    return out


def static_tuple(m: MarketConfig, s: StaticFractions) -> tuple[int, int, int, int]:
    return (to_wad(s.imf), to_wad(s.mmf), m.params.impact_wad, m.params.liq_fee_wad)


def deploy(
    chain: Chain,
    config: Config,
    *,
    kind: ControllerKind = "dynamic",
    admin: str | None = None,
    static_overrides: dict[int, StaticFractions] | None = None,
    params_overrides: dict[int, RiskParams] | None = None,
    seal: bool = True,
    seed_liquidity: bool = True,
) -> Deployment:
    """Deploy a full system with every market of ``config`` listed.

    Parameters
    ----------
    kind
        ``dynamic`` (LeverageController) or a static baseline (StaticLeverageController) with the
        market's ``static_calm`` / ``static_conservative`` fractions (or ``static_overrides``).
    seal
        End the bootstrap phase (every later change is timelocked).
    seed_liquidity
        Mint mock USD and fund the vault and the insurance fund with the configured seeds.
    """
    admin = admin or chain.accounts()[0]
    usd = chain.deploy("MockUSD", sender=admin)
    if kind == "dynamic":
        controller = chain.deploy("LeverageController", admin, config.engine.param_delay_sec, sender=admin)
    else:
        controller = chain.deploy("StaticLeverageController", admin, sender=admin)
    engine = chain.deploy("MarginEngine", admin, usd.address, controller.address,
                          config.engine.engine_config_tuple(TOKEN_DECIMALS), sender=admin)
    chain.transact(controller.functions.bindEngine(engine.address), admin)
    pusher = chain.deploy("RiskPusher", admin, controller.address, engine.address, sender=admin)
    # The keeper writes risk reports (and, on the dynamic controller, calibrated tails) through the pusher.
    chain.transact(controller.functions.grantRole(controller.functions.REPORTER_ROLE().call(), pusher.address),
                   admin)
    lens = chain.deploy("MarginLens", engine.address, sender=admin)
    dep = Deployment(chain, config, kind, admin, usd, controller, engine, pusher, lens)
    for m in config.markets:
        feeds = {}
        for i, k in enumerate(FEED_KINDS):
            if k in dep.reported:
                feeds[k] = chain.deploy("ReportFeed", controller.address, m.id, i, m.feed_decimals,
                                        f"{m.symbol} {k} (risk report)", sender=admin)
                continue
            feeds[k] = chain.deploy("MockAggregator", m.feed_decimals, f"{m.symbol} {k}",
                                    m.feed_answer(k, m.initial[k]), sender=admin)
            # The keeper pushes through RiskPusher (one transaction: pushes, reports, poke, accrual).
            chain.transact(feeds[k].functions.setTransmitter(pusher.address, True), admin)
        dep.feeds[m.id] = feeds
        cfg = feed_config_tuples(m, feeds)
        first = report_input(m.id, {k: m.feed_answer(k, m.initial[k]) for k in FEED_KINDS if k in dep.reported})
        if kind == "dynamic":
            params = (params_overrides or {}).get(m.id, m.params)
            chain.transact(controller.functions.listMarket(m.id, cfg, params.as_tuple()), admin)
            chain.transact(controller.functions.submitReport(*first), admin)
            chain.transact(controller.functions.poke(m.id), admin)
        else:
            s = (static_overrides or {}).get(m.id) or (m.static_calm if kind == "static_calm" else m.static_conservative)
            dep.static[m.id] = s
            chain.transact(controller.functions.listMarket(m.id, cfg, static_tuple(m, s)), admin)
            chain.transact(controller.functions.submitReport(*first), admin)
    if seal:
        chain.transact(controller.functions.sealBootstrap(), admin)
    if seed_liquidity:
        unit = 10**TOKEN_DECIMALS
        vault = int(config.engine.vault_seed_usd * unit)
        ins = int(config.engine.insurance_seed_usd * unit)
        chain.transact(usd.functions.mint(admin, vault + ins), admin)
        chain.transact(usd.functions.approve(engine.address, 2**256 - 1), admin)
        if vault:
            chain.transact(engine.functions.fundVault(vault), admin)
        if ins:
            chain.transact(engine.functions.fundInsurance(ins), admin)
    return dep


def market_table(dep: Deployment) -> list[dict[str, Any]]:
    """Live parameters of every market: price, feeds, max leverage and fractions per side."""
    rows = []
    c = dep.controller
    for m in dep.config.markets:
        price = c.functions.priceWad(m.id).call()
        row: dict[str, Any] = {"market": m.symbol, "id": m.id, "price_usd": price / 1e18}
        for k in ("volatility", "funding", "depth", "skew"):
            ok, v = c.functions.readFeed(m.id, FEED_KINDS.index(k)).call()
            row[k] = v / 1e18 if ok else None
        for side, is_long in (("long", True), ("short", False)):
            q = c.functions.quote(m.id, is_long, 0).call()
            # MarketQuote: price, priceTime, funding, fundingTime, imf, mmfBase, maxMmf, maxImf,
            # slip, impactCoef, depth, liqFee, priceOk, riskFeedsOk, fundingOk, sequencerUp.
            imf = q[4]
            mmf = min(q[5] + q[8], q[6])
            row[f"max_leverage_{side}"] = 1e18 / imf
            row[f"imf_{side}"] = imf / 1e18
            row[f"mmf_{side}"] = mmf / 1e18
            row[f"risk_feeds_ok_{side}"] = bool(q[13])
        rows.append(row)
    return rows
