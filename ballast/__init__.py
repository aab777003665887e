"""Ballast: dynamic leverage adjustment for on-chain derivatives (off-chain risk library)."""

from ballast.errors import BallastError, ChainError, DataError, ValidationError, VerificationError

__all__ = ["BallastError", "ChainError", "DataError", "ValidationError", "VerificationError"]
__version__ = "0.1.0"
