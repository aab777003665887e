"""Type aliases shared across the package."""

from __future__ import annotations

from typing import NewType

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

Wad = NewType("Wad", int)
"""An integer fixed-point number scaled by 1e18 (ratios, leverage, USD amounts, prices)."""

TokenAmount = NewType("TokenAmount", int)
"""An integer amount in the collateral token's smallest unit (6 decimals for the mock USD token)."""

WAD: int = 10**18
"""The WAD scale."""
