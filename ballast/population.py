"""A seeded population of trader accounts and the liquidators that watch them."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from web3 import Web3

from ballast.errors import ValidationError

MAX_ACCOUNTS = 5_000


@dataclass(frozen=True)
class Trader:
    """One trader account.

    Attributes
    ----------
    address
        Account address (impersonated on Anvil: no keys involved).
    collateral_usd
        Deposit, USD.
    side
        +1 long, -1 short (first session; later sessions keep it).
    lev_frac
        Fraction of the live maximum leverage the trader takes (many near 1, as real traders do).
    sessions
        (open_block, close_block) pairs; close_block may be past the end (held to the end).
    anticipatory
        Cuts its position in half when the volatility feed exceeds 1.5x its value at entry.
    """

    address: str
    collateral_usd: float
    side: int
    lev_frac: float
    sessions: tuple[tuple[int, int], ...]
    anticipatory: bool


@dataclass(frozen=True)
class LiquidatorSpec:
    """Liquidator keepers: how many, how late they see the chain, how many calls per block each."""

    count: int = 3
    latency_blocks: int = 1
    max_per_block: int = 25


def default_liquidator_count(accounts: int) -> int:
    """Liquidator keepers for a population: one per 100 accounts, between 3 and 50 (so that the
    liquidators' capacity, ``count * max_per_block`` calls per block, grows with the book)."""
    return min(50, max(3, accounts // 100))


@functools.lru_cache(maxsize=MAX_ACCOUNTS)
def trader_address(i: int) -> str:
    return Web3.to_checksum_address(f"0x{0xBA11A57 << 128 | (i + 1):040x}")


def liquidator_address(i: int) -> str:
    return Web3.to_checksum_address(f"0x{0x11D0 << 144 | (i + 1):040x}")


def generate(n: int, blocks: int, *, seed: int | np.random.Generator | None, long_bias: float = 0.55,
             anticipatory_share: float = 0.0) -> list[Trader]:
    """Draw ``n`` traders for a scenario of ``blocks`` blocks.

    Collateral is log-normal (median 5,000 USD, capped at 500,000); the leverage fraction is
    Beta(6, 1.5) clipped to [0.2, 0.97] (mean about 0.8: many near the maximum); the first session
    opens in the first 30% of the run, holds a geometric time (mean a third of the run), and a
    trader re-enters after a pause.
    """
    if not 1 <= n <= MAX_ACCOUNTS:
        raise ValidationError("accounts", n, f"[1, {MAX_ACCOUNTS}]")
    if blocks < 1:
        raise ValidationError("blocks", blocks, ">= 1")
    if not 0.0 <= long_bias <= 1.0:
        raise ValidationError("long_bias", long_bias, "[0, 1]")
    if not 0.0 <= anticipatory_share <= 1.0:
        raise ValidationError("anticipatory_share", anticipatory_share, "[0, 1]")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    out = []
    for i in range(n):
        coll = float(min(500_000.0, rng.lognormal(np.log(5_000.0), 1.0)))
        side = 1 if rng.random() < long_bias else -1
        frac = float(np.clip(rng.beta(6.0, 1.5), 0.2, 0.97))
        sessions = []
        t = int(rng.integers(0, max(1, int(blocks * 0.3))))
        while t < blocks:
            hold = int(rng.geometric(min(1.0, 3.0 / blocks))) + 5
            sessions.append((t, t + hold))
            t = t + hold + int(rng.geometric(min(1.0, 6.0 / blocks))) + 1
        out.append(Trader(trader_address(i), round(coll, 2), side, frac, tuple(sessions),
                          bool(rng.random() < anticipatory_share)))
    return out
