"""The controller's risk report (issue 14): the four risk inputs of a market in one keeper call.

On chain, ``submitReport(marketId, mask, answers)`` writes volatility, funding, depth and skew
(``FeedKind`` 1-4; bit k-1 of ``mask`` selects field k) in their feeds' decimals, and the controller
reads them from its own storage. Each field is exposed as a Chainlink-style ``ReportFeed`` adapter,
which is the address a market lists as the field's feed. The price stays an aggregator
(``MockAggregator.transmit``). This module turns "answers due per kind" into the ``RiskPusher``
arguments: aggregator feeds and answers, then ``ReportInput`` tuples.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from ballast.errors import ValidationError

REPORT_KINDS = ("volatility", "funding", "depth", "skew")
"""The report's fields in ``FeedKind`` order (1..4); the price is never reported."""
INT128_MAX = 2**127 - 1
INT128_MIN = -(2**127)

ReportInput = tuple[int, int, list[int]]
"""``RiskPusher.ReportInput``: (marketId, mask, answers[4])."""


def saturate(answer: int) -> int:
    """What the report stores for an answer: itself, or the int128 extreme of its sign."""
    return max(INT128_MIN, min(INT128_MAX, int(answer)))


def report_input(market_id: int, answers: Mapping[str, int]) -> ReportInput:
    """One market's ``ReportInput`` from {kind: answer in feed decimals} (report kinds only)."""
    if not answers:
        raise ValidationError("answers", dict(answers), f"at least one of {REPORT_KINDS}")
    mask, row = 0, [0, 0, 0, 0]
    for k, a in answers.items():
        if k not in REPORT_KINDS:
            raise ValidationError("report kind", k, f"one of {REPORT_KINDS}")
        i = REPORT_KINDS.index(k)
        mask |= 1 << i
        row[i] = int(a)
    return market_id, mask, row


def pusher_args(feeds: Mapping[int, Mapping[str, Any]], reported: Sequence[str] | frozenset[str],
                due: Mapping[int, Mapping[str, int]]) -> tuple[list[str], list[int], list[ReportInput]]:
    """``RiskPusher.push`` arguments (feeds, answers, reports) for ``due`` = {market: {kind: answer}}.

    ``feeds`` maps a market id to its {kind: contract}; kinds in ``reported`` go into the market's
    report, the others (the price) to their aggregators."""
    addrs: list[str] = []
    answers: list[int] = []
    reports: list[ReportInput] = []
    for mid, d in due.items():
        fm = feeds[mid]
        rep = {k: a for k, a in d.items() if k in reported}
        for k, a in d.items():
            if k not in reported:
                addrs.append(fm[k].address)
                answers.append(int(a))
        if rep:
            reports.append(report_input(mid, rep))
    return addrs, answers, reports


def reported_kinds(chain: Any, controller: str, market_id: int, feeds: Mapping[str, Any]) -> frozenset[str]:
    """The kinds of ``feeds`` the controller reads from its report: those whose feed is one of its
    own ``ReportFeed`` adapters for this market (``source()`` names the controller and market)."""
    out = set()
    for k, f in feeds.items():
        if k not in REPORT_KINDS:
            continue
        try:
            src = chain.at("ReportFeed", f.address).functions.source().call()
        except Exception:  # an aggregator without source(): read through its own view
            continue
        if str(src[0]).lower() == str(controller).lower() and int(src[1]) == market_id:
            out.add(k)
    return frozenset(out)
