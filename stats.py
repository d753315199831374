"""Statistics of a grid, without scipy: mean and sample std over seeds, and paired differences with Student-t
confidence intervals.

Runs of one replicate k share their data (seed + k, data_seed + k: the same batches, the same evaluation
windows), so two entries are compared by the per-replicate differences d_k = x_k(entry) - x_k(reference),
k = 1..n: the interval is mean(d) +- t_{1 - a/2, n - 1} * sd(d) / sqrt(n) (sd with ddof=1). It holds 0
("no difference resolved") unless the difference is larger than the seeds' disagreement about it. With one
seed there is no interval.

The t quantile comes from the regularised incomplete beta function (Lentz's continued fraction, as in
Numerical Recipes' betacf), inverted by bisection: exact to ~1e-10, enough for a 95% interval.
"""

import math

import numpy as np


def summary(values) -> list | None:
    """[mean, sample std (ddof=1; 0 for one value), n], or None (n/a) if any value is None."""
    if not values or any(v is None for v in values):
        return None
    return [float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0, len(values)]


def _beta_cf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function I_x(a, b) (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for num in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b), x in [0, 1]."""
    if x <= 0.0 or x >= 1.0:
        return float(x >= 1.0)
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_cf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_cf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with df degrees of freedom."""
    tail = 0.5 * incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p (0 < p < 1), by bisection on t_cdf."""
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        high *= 2.0
    for _ in range(200):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if t_cdf(mid, df) < p else (low, mid)
    return 0.5 * (low + high)


def paired_difference(values, reference, level: float = 0.95) -> dict | None:
    """The mean of the paired differences values[k] - reference[k] and its `level` Student-t interval:
    {"mean", "low", "high", "n", "resolved"} (resolved: the interval excludes 0), or None when a value is
    missing; with one pair the interval is (None, None)."""
    if not values or len(values) != len(reference) or any(v is None for v in (*values, *reference)):
        return None
    d = np.asarray(values, dtype=float) - np.asarray(reference, dtype=float)
    n, mean = len(d), float(d.mean())
    if n < 2:
        return {"mean": mean, "low": None, "high": None, "n": n, "resolved": False}
    half = t_quantile(0.5 + level / 2.0, n - 1) * float(d.std(ddof=1)) / math.sqrt(n)
    return {
        "mean": mean,
        "low": mean - half,
        "high": mean + half,
        "n": n,
        "resolved": not -half <= mean <= half,
    }


def format_difference(diff: dict | None, places: int = 3) -> str:
    """'-0.052 [-0.071, -0.033]' (resolved, in bold), 'n/a', or '+0.004 [-0.010, 0.018] ~' (holds 0)."""
    if diff is None:
        return "n/a"
    if diff["low"] is None:
        return f"{diff['mean']:+.{places}f} (1 seed)"
    text = f"{diff['mean']:+.{places}f} [{diff['low']:+.{places}f}, {diff['high']:+.{places}f}]"
    return f"**{text}**" if diff["resolved"] else f"{text} ~"
