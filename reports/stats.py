"""The report's statistics, one definition each (scipy.stats), used by tables and plots alike.

* an arm: mean ± the half-width of the 95% Student-t interval of the mean over its seeds;
* a difference between an arm and the baseline: **paired by seed** (only seeds both have), mean
  difference ± its 95% t-interval and the paired t-test's p-value (``scipy.stats.ttest_rel``),
  Holm-corrected across the arms compared with the same baseline.

With fewer than two values there is no interval and no p-value: the tables say "1 seed, no
interval" rather than printing NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats

ALPHA = 0.05


def t_halfwidth(values: Sequence[float]) -> float | None:
    """Half-width of the 95% t-interval of the mean; None with fewer than two finite values."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if len(v) < 2:
        return None
    return float(stats.t.ppf(1 - ALPHA / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))


def t_interval(values: Sequence[float]) -> tuple[float, float]:
    """(low, high) of the 95% t-interval (the mean twice without an interval): for seaborn."""
    v = [float(x) for x in values]
    mean = float(np.mean(v)) if v else float("nan")
    half = t_halfwidth(v) or 0.0
    return mean - half, mean + half


def paired_difference(arm: Mapping[int, float], base: Mapping[int, float]) -> dict[str, float]:
    """``arm - base`` over the seeds both have: mean, 95% half-width, paired t-test p, n."""
    seeds = sorted(set(arm) & set(base))
    a = np.array([arm[s] for s in seeds], dtype=float)
    b = np.array([base[s] for s in seeds], dtype=float)
    out: dict[str, float] = {"n": len(seeds), "mean": float(np.mean(a - b)) if seeds else math.nan}
    out["ci"] = t_halfwidth(list(a - b)) if seeds else None
    out["p"] = math.nan
    if len(seeds) >= 2:
        d = a - b
        if np.all(d == d[0]):  # no spread: the t-test is undefined, the answer is not
            out["p"] = 1.0 if d[0] == 0 else 0.0
        else:
            out["p"] = float(stats.ttest_rel(a, b).pvalue)
    return out


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (NaN stays NaN), in the input order."""
    order = [i for i in np.argsort(pvalues) if not math.isnan(pvalues[i])]
    adjusted = [math.nan] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def verdict(mean: float, ci: float | None, p_holm: float, n: int) -> str:
    """The difference in words, as the report states it."""
    if n < 2 or ci is None:
        return f"{n} paired seed{'s' if n != 1 else ''}, no interval"
    if p_holm < ALPHA:
        return f"significant ({'higher' if mean > 0 else 'lower'}; Holm p = {p_holm:.3g})"
    return f"not significant (Holm p = {p_holm:.3g})"
