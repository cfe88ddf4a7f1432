"""Inference over replicates (demonstration draws): t-intervals, tests, Holm, equivalence, power.

Every function takes one value per replicate (the unit of replication, never the test
queries inside a unit) and returns plain numbers; quantiles and power come from scipy and
statsmodels. With fewer than two replicates there is no interval, test or power: those fields
are None, and ``describe`` says so in words instead of printing ``nan``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95
ALPHA = 0.05
POWER = 0.80


@dataclass(frozen=True)
class Estimate:
    """Mean of ``n`` replicate values with its two-sided ``LEVEL`` t-interval, the p-value of
    mean = 0, the TOST p-value of |mean| >= ``margin``, and the minimum detectable effect
    (two-sided ``ALPHA``, ``POWER``) at this n and spread."""

    mean: float
    n: int
    sd: float | None
    low: float | None
    high: float | None
    p: float | None
    margin: float
    p_equivalent: float | None
    detectable: float | None

    @property
    def se(self) -> float | None:
        """The standard error of the mean (None for one replicate)."""
        return None if self.sd is None else self.sd / math.sqrt(self.n)


def estimate(values: Sequence[float], margin: float = 0.05) -> Estimate:
    """``Estimate`` of the replicate ``values`` (NaNs dropped)."""
    from scipy import stats as scipy_stats
    from statsmodels.stats.power import TTestPower

    array = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    n = len(array)
    if n == 0:
        raise ValueError("estimate needs at least one finite value")
    mean = float(array.mean())
    if n < 2:
        return Estimate(mean, n, None, None, None, None, margin, None, None)
    sd = float(array.std(ddof=1))
    se = sd / math.sqrt(n)
    t = scipy_stats.t(df=n - 1)
    half = float(t.ppf(0.5 + LEVEL / 2)) * se
    if se == 0:  # every replicate equal: the data say exactly this value
        p = 0.0 if mean != 0 else 1.0
        p_equivalent = 0.0 if abs(mean) < margin else 1.0
    else:
        p = float(2 * t.sf(abs(mean) / se))
        p_equivalent = float(max(t.sf((mean + margin) / se), t.cdf((mean - margin) / se)))
    effect = TTestPower().solve_power(nobs=n, alpha=ALPHA, power=POWER, alternative="two-sided")
    return Estimate(
        mean, n, sd, mean - half, mean + half, p, margin, p_equivalent, float(effect) * sd
    )


def holm(p_values: Sequence[float | None], family_size: int | None = None) -> list[float | None]:
    """Holm-adjusted p-values (None stays None). ``family_size`` larger than the number given
    counts the family's missing members as p = 1, so the adjustment is the declared family's."""
    from statsmodels.stats.multitest import multipletests

    present = [i for i, p in enumerate(p_values) if p is not None]
    size = max(family_size or 0, len(present))
    padded = [float(p_values[i]) for i in present] + [1.0] * (size - len(present))  # type: ignore[arg-type]
    adjusted: list[float | None] = [None] * len(p_values)
    if padded:
        corrected = multipletests(padded, method="holm")[1]
        for position, index in enumerate(present):
            adjusted[index] = float(corrected[position])
    return adjusted


def verdict(estimate: Estimate, p_adjusted: float | None, names: tuple[str, str]) -> str:
    """The one claim the numbers allow: ``names[0]`` / ``names[1]`` higher (adjusted p below
    ``ALPHA``), equivalent within the margin (TOST), or inconclusive with the detectable effect."""
    if estimate.n < 2 or p_adjusted is None:
        return f"one replicate ({estimate.n}): no test"
    if p_adjusted < ALPHA:
        return f"{names[0] if estimate.mean > 0 else names[1]} higher"
    if estimate.p_equivalent is not None and estimate.p_equivalent < ALPHA:
        return f"equivalent within ±{estimate.margin:g}"
    detectable = f"{estimate.detectable:.3f}" if estimate.detectable is not None else "?"
    return f"inconclusive (detectable effect ±{detectable})"


def describe(estimate: Estimate, digits: int = 3) -> str:
    """``mean [low, high]`` with its signs, or ``mean (one replicate, no interval)``."""
    if estimate.low is None or estimate.high is None:
        return f"{estimate.mean:+.{digits}f} (n = {estimate.n}, no interval)"
    return f"{estimate.mean:+.{digits}f} [{estimate.low:+.{digits - 1}f}, {estimate.high:+.{digits - 1}f}]"


def format_p(p: float | None) -> str:
    """A p-value for a table: ``<0.001``, two significant digits, or an en dash for none."""
    if p is None:
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.2g}"
