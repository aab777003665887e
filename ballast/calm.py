"""The calm period of a run and the static cap pinned to it (``static_calm``), shared by the Anvil
lab (``ballast.lab``) and the vectorized simulator (``ballast.marketsim``)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ballast.config import StaticFractions

_Floats = npt.ArrayLike


def calm_mask(vol: _Floats) -> npt.NDArray[np.bool_]:
    """The calm blocks of a run: those whose volatility feed is below the run's median. A feed that
    never moved (e.g. the predictive keeper without a GARCH estimate) has no calm period to single
    out: every block is calm."""
    v = np.asarray(vol, dtype=float)
    calm = v < np.median(v)
    return calm if calm.any() else np.ones_like(calm)


def calm_fractions(vol: _Floats, lev_long: _Floats, lev_short: _Floats, mmf_long: _Floats,
                   mmf_short: _Floats) -> StaticFractions:
    """The static cap equal to a dynamic run's calm-period leverage: over the calm blocks
    (``calm_mask``), IMF = 1 / mean max leverage (both sides) and MMF = 1 / mean(1 / maintenance
    fraction), at most 0.9 IMF."""
    lev = (np.asarray(lev_long, dtype=float) + np.asarray(lev_short, dtype=float)) / 2
    mmf = np.r_[np.asarray(mmf_long, dtype=float), np.asarray(mmf_short, dtype=float)]
    calm = calm_mask(vol)
    ok = np.isfinite(lev) & calm
    imf = round(1.0 / float(np.mean(lev[ok])), 6)
    calm2 = np.r_[calm, calm]
    mmf_c = round(1.0 / float(np.mean(1.0 / mmf[calm2 & np.isfinite(mmf)])), 6)
    return StaticFractions(imf, min(mmf_c, round(imf * 0.9, 6)))


__all__ = ["calm_fractions", "calm_mask"]
