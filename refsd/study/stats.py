"""Statistics of Likert answers: mean, sd, Student-t 95 % CI, Krippendorff's ordinal alpha.

* :func:`describe`: n, mean, sample sd (n - 1), median and the two-sided confidence interval of the
  mean ``mean +- t(1 - (1 - level) / 2, n - 1) * sd / sqrt(n)``. The t quantile is computed here
  (:func:`t_quantile`: the regularized incomplete beta function by its continued fraction,
  inverted by bisection; no scipy).
* :func:`ordinal_alpha`: Krippendorff's alpha with the ordinal metric (the ``krippendorff``
  package) over a raters x units table, NaN = not rated; None (with the reason) where it is not
  defined (fewer than two raters on any unit, or no variation at all).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = ["t_cdf", "t_quantile", "describe", "ordinal_alpha"]


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    ln = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(ln) * _betacf(a, b, x) / a
    return 1.0 - math.exp(ln) * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """Student's t cumulative distribution function."""
    if df <= 0:
        raise ValueError("degrees of freedom must be positive")
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (``t_quantile(0.975, 10)`` = 2.228)."""
    if not 0.0 < p < 1.0:
        raise ValueError("p must be in (0, 1)")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def describe(values: Iterable[float], level: float = 0.95) -> dict[str, Any]:
    """``{"n", "mean", "sd", "median", "ci_low", "ci_high"}`` (None where undefined: no values, or one)."""
    x = np.asarray(list(values), dtype=np.float64)
    n = int(x.size)
    out: dict[str, Any] = {"n": n, "mean": None, "sd": None, "median": None, "ci_low": None, "ci_high": None}
    if n == 0:
        return out
    out["mean"] = float(x.mean())
    out["median"] = float(np.median(x))
    if n > 1:
        sd = float(x.std(ddof=1))
        half = t_quantile(1.0 - (1.0 - level) / 2.0, n - 1) * sd / math.sqrt(n)
        out.update(sd=sd, ci_low=out["mean"] - half, ci_high=out["mean"] + half)
    return out


def ordinal_alpha(table: Sequence[Sequence[float]], scale: Sequence[int] = (1, 2, 3, 4, 5)) -> tuple[float | None, str]:
    """Krippendorff's ordinal alpha of a raters x units table (NaN = missing): ``(alpha, note)``;
    alpha None with the reason when it is not defined."""
    import krippendorff

    data = np.asarray(table, dtype=np.float64)
    if data.ndim != 2 or data.shape[0] < 2:
        return None, "needs at least two raters"
    rated = (~np.isnan(data)).sum(0)
    pairable = data[:, rated >= 2]
    if pairable.shape[1] == 0:
        return None, "no question was answered by two raters yet"
    values = pairable[~np.isnan(pairable)]
    if np.unique(values).size < 2:
        return None, "every answer is the same value: agreement is perfect but alpha is not defined"
    alpha = float(krippendorff.alpha(reliability_data=pairable, level_of_measurement="ordinal",
                                     value_domain=list(scale)))
    if not math.isfinite(alpha):
        return None, "not defined for these answers"
    return alpha, f"{pairable.shape[1]} questions rated by 2+ raters"
