"""Statistics over seeds, as the reports of runs and studies use them: the mean with a t-based
confidence interval (`summary`), a percentile bootstrap CI of the mean (`bootstrap_ci`), the
Wilcoxon signed-rank test of paired differences (`wilcoxon`, `paired`), mean ranks of several
strategies (`mean_ranks`) and the area under a learning curve (`aulc`).

scipy.stats computes them; this module fixes what the reports need around it: NaN (a run
without an accuracy) is dropped, differences equal up to float noise are ties, a resampling
seed gives the same interval every time, and the results are plain floats.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.stats

# Wilcoxon without ties: scipy's exact null distribution up to this many non-zero pairs.
EXACT_MAX_N = 25
# Wilcoxon with tied differences: the exact distribution enumerates all 2^n sign patterns,
# affordable up to 2^13 = 8192 (scipy's own limit for method='auto').
EXACT_TIES_MAX_N = 13


def _values(v) -> np.ndarray:
    """Any array-like -> 1-D float array without its NaNs."""
    v = np.asarray(v, float).ravel()
    return v[~np.isnan(v)]


def t975(df) -> float:
    """The 0.975 quantile of Student's t with ``df`` >= 1 degrees of freedom."""
    return float(scipy.stats.t.ppf(0.975, df))


def aulc(labeled, acc) -> np.ndarray:
    """Normalised area under the learning curve.

    labeled: [T] labelled counts (increasing); acc: [..., T] accuracies in [0, 1].
    Returns [...]: trapezoid area / (labeled[-1] - labeled[0]), i.e. the curve's mean height;
    with T = 1 the accuracy itself. NaN where any round is NaN.
    """
    x = np.asarray(labeled, float)
    y = np.asarray(acc, float)
    if x.size == 1:
        return y[..., 0]
    area = np.sum((y[..., 1:] + y[..., :-1]) / 2 * np.diff(x), axis=-1)
    return area / (x[-1] - x[0])


def summary(v) -> dict:
    """[S] -> {"mean", "std" (ddof 1), "n", "ci": [lo, hi]} over the non-NaN values; ci is the
    t-based 95 % CI of the mean. std and ci are NaN below two values, everything with none."""
    v = _values(v)
    n = v.size
    mean = float(v.mean()) if n else math.nan
    std = float(v.std(ddof=1)) if n > 1 else math.nan
    half = t975(n - 1) * std / math.sqrt(n) if n > 1 else math.nan
    return {"mean": mean, "std": std, "n": n, "ci": [mean - half, mean + half]}


def bootstrap_ci(values, n_boot: int = 10000, seed: int = 0, level: float = 0.95):
    """Percentile bootstrap CI of the mean of ``values`` [S] (NaNs dropped).

    ``n_boot`` resamples drawn by ``numpy.random.default_rng(seed)``: the same seed gives the
    same interval. Returns (lo, hi) floats; (nan, nan) with no values, (v, v) with one value
    (every resample of one value is that value; scipy needs two).
    """
    v = _values(values)
    if v.size < 2:
        return (float(v[0]), float(v[0])) if v.size else (math.nan, math.nan)
    res = scipy.stats.bootstrap(
        (v,),
        np.mean,
        n_resamples=n_boot,
        confidence_level=level,
        method="percentile",
        random_state=np.random.default_rng(seed),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _positive_rank_sum(d, axis=-1):
    """W+, the sum of the ranks of |d| over the positive differences (ties: average ranks).
    d: [..., n] -> [...]."""
    ranks = scipy.stats.rankdata(np.abs(d), axis=axis)
    return np.sum(np.where(d > 0, ranks, 0), axis=axis)


def wilcoxon(diffs) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired differences ``diffs`` [S].

    Differences are rounded to 12 decimals, then NaNs and zeros are dropped (Wilcoxon's
    "wilcox" zero method). The p-value is exact where that is affordable: scipy's exact null
    distribution without ties up to `EXACT_MAX_N` pairs; with ties (a few seeds with equal
    differences) up to `EXACT_TIES_MAX_N` pairs by enumerating every sign pattern of the
    average ranks, p = 2 min(P(W+ <= w), P(W+ >= w)) capped at 1. Beyond: the normal
    approximation with tie correction and no continuity correction. Returns 1.0 when no
    non-zero difference remains.
    """
    # Accuracies are fractions of a test set, so equal differences may differ in the last bits;
    # rounding makes them the ties (and zeros) they are.
    d = np.round(np.asarray(diffs, float), 12)
    d = d[~np.isnan(d) & (d != 0)]
    n = d.size
    if n == 0:
        return 1.0
    ties = np.unique(np.abs(d)).size < n
    if ties and n <= EXACT_TIES_MAX_N:
        res = scipy.stats.permutation_test(
            (d,), _positive_rank_sum, permutation_type="samples", n_resamples=np.inf,
            vectorized=True, alternative="two-sided",
        )  # fmt: skip
        return float(res.pvalue)
    # "approx" (renamed "asymptotic" in scipy 1.15, still accepted) keeps scipy >= 1.11 working.
    method = "exact" if n <= EXACT_MAX_N and not ties else "approx"
    return float(scipy.stats.wilcoxon(d, zero_method="wilcox", method=method).pvalue)


def paired(d, n_boot: int, seed: int) -> dict:
    """[S] per-seed differences -> {"mean", "ci" (bootstrap 95 %), "p" (Wilcoxon), "n" pairs},
    NaNs dropped; mean and p are NaN without a pair."""
    d = _values(d)
    return {
        "mean": float(d.mean()) if d.size else math.nan,
        "ci": list(bootstrap_ci(d, n_boot, seed)),
        "p": wilcoxon(d) if d.size else math.nan,
        "n": int(d.size),
    }


def mean_ranks(acc) -> np.ndarray:
    """acc: [K strategies, S, T] -> [K, T] mean rank over seeds (1 = best, ties averaged).

    A (seed, round) where any strategy has no accuracy (NaN) is skipped: ranks there would not
    compare like with like. NaN where every seed is skipped.
    """
    a = np.asarray(acc, float)
    ranks = scipy.stats.rankdata(-a, axis=0)  # [K, S, T]: 1 = the highest accuracy
    ok = ~np.isnan(a).any(axis=0)  # [S, T]
    ranks = np.where(ok[None], ranks, np.nan)
    with np.errstate(invalid="ignore"):
        return np.nansum(ranks, axis=1) / np.where(ok.sum(0) > 0, ok.sum(0), np.nan)
