"""Order flow of the stress lab (engine v2, issue 10): the price feed's rounds, the liquidation
flags, and the lab's model of a pull oracle.

Traders commit orders; an order settles at the FIRST round of the price feed published at or after
``commit + orderMinDelaySec``. A liquidation is flagged first and settles at the first round
published at or after ``flag + orderMinDelaySec`` (while that round is the latest). Something has to
publish those rounds: **the lab models a pull oracle**. In any block where a pending order or a
flagged account waits for a round after its settle-from time, the oracle keeper publishes the
scenario's current price (the price its feed model targets at this block, ``FeedModel.targets``,
i.e. with the scenario's oracle delay) in that block's keeper transaction, whether or not the push
rules (deviation, heartbeat) would call for it. The block's transactions are ordered so that this
push comes first, then the settlements and liquidations that use it, then new flags and new
orders (which can only use a later round). When the keeper is down or the scenario marks the price
stale, nothing is published and orders and flags wait (orders expire after their window and are
cancelled, refunded).

Exact to the wei with the chain: :class:`PriceRounds` keeps every round the lab published (the
``MockAggregator`` keeps every round), so a settlement is mirrored at its round's answer and time
and the previous round's time.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from web3 import Web3


def topic(sig: str) -> str:
    """The topic0 of an event signature, as a 0x-prefixed lowercase hex string."""
    return "0x" + Web3.keccak(text=sig).hex().removeprefix("0x")


@dataclass(frozen=True)
class Round:
    """One round of a feed: id, raw answer (feed decimals) and publication time."""

    round_id: int
    answer: int
    updated_at: int


@dataclass
class PriceRounds:
    """Every round of the market's price feed, as the lab published them (ids consecutive)."""

    rounds: list[Round] = field(default_factory=list)
    _times: list[int] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._times = [r.updated_at for r in self.rounds]

    @property
    def latest(self) -> Round:
        return self.rounds[-1]

    def push(self, answer: int, t: int) -> Round:
        r = Round(self.latest.round_id + 1, answer, t)
        self.rounds.append(r)
        self._times.append(t)
        return r

    def get(self, round_id: int) -> Round | None:
        i = round_id - self.rounds[0].round_id
        return self.rounds[i] if 0 <= i < len(self.rounds) else None

    def first_from(self, t: int) -> Round | None:
        """The first round published at or after ``t`` (publication times never decrease)."""
        i = bisect.bisect_left(self._times, t)
        return self.rounds[i] if i < len(self.rounds) else None

    def prev_time(self, r: Round) -> int:
        """Publication time of the round before ``r`` (0 when there is none)."""
        p = self.get(r.round_id - 1)
        return p.updated_at if p is not None else 0


def waiting_for_round(froms: list[int], rounds: PriceRounds, now: int) -> bool:
    """Whether something that settles from one of ``froms`` is due at ``now`` and has no round yet:
    the pull oracle then publishes one in this block."""
    latest = rounds.latest.updated_at
    return any(f <= now and latest < f for f in froms)


__all__ = ["PriceRounds", "Round", "topic", "waiting_for_round"]
