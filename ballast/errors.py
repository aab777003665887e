"""Exception hierarchy: one root, subclasses that name what was wrong and with which value."""

from __future__ import annotations

from typing import Any


class BallastError(Exception):
    """Root of every exception raised by the ballast package."""


class ValidationError(BallastError, ValueError):
    """An input (argument, config field, scenario field) is outside its allowed range.

    Parameters
    ----------
    field
        Name of the offending field or argument, dotted for nested config (``market.z``).
    value
        The value that was given.
    allowed
        Human-readable description of the allowed range or set.
    """

    def __init__(self, field: str, value: Any, allowed: str) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"{field}={value!r} is invalid: allowed {allowed}")


class DataError(BallastError):
    """Market data could not be found, parsed, or is unusable (too short, non-positive prices)."""


class ChainError(BallastError):
    """A chain interaction failed (node unreachable, transaction reverted, deployment missing)."""


class VerificationError(BallastError):
    """The stress lab found a violation of an on-chain invariant or a mirror mismatch."""


class ScenarioError(BallastError):
    """A scenario or run measured nothing: it opened no position, or nothing in it came under stress
    (no liquidation and no bad debt in any run). The message names the scenario and what was missing:
    a row of zeros would read as "no risk" when the run simply never traded."""
