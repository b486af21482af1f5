"""Inference over training seeds: confidence intervals, paired and unpaired tests, Holm's
adjustment, the seeds a decision needs, and the verdict of one comparison.

Framework-neutral (numpy and scipy only).  Every function takes plain sequences of numbers;
NaNs are the caller's to drop.  See docs/statistics.md for what each number means.
"""
from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import numpy as np
from scipy import stats

from ..errors import UnetlabError
from .sequential import sign_patterns

#: the exact sign-flip test enumerates all 2**n sign patterns up to this many pairs; above it,
#: the paired t-test (the permutation distribution is then close to Student's t)
EXACT_MAX_PAIRS = 12
#: the fewest pairs with which the exact two-sided sign-flip test can reach p < 0.05 (2 / 2**6)
MIN_DECIDING_PAIRS = 6

SIGN_FLIP = "exact sign-flip"
PAIRED_T = "paired t"
WELCH = "Welch t"

#: metrics whose smaller value is better; the rest of DIRECTIONS is higher-is-better
LOWER_IS_BETTER = ("final loss", "best loss", "FID", "FD", "FD-small", "FD-digits", "FD-shapes", "FID/FD-small", "KID",
                   "best score", "peak mem MiB", "first step s", "params", "GFLOPs")
HIGHER_IS_BETTER = ("train img/s", "sample img/s", "precision", "recall", "density", "coverage")


class MeanCI(NamedTuple):
    """A mean over seeds and its two-sided Student-t interval (NaN bounds when n < 2)."""
    mean: float
    ci_low: float
    ci_high: float
    n: int


class TestResult(NamedTuple):
    """A two-sided p-value and the name of the test that gave it."""
    p: float
    method: str


def _clean(values) -> np.ndarray:
    return np.asarray(values, dtype=float).ravel()


def mean_ci(values, level: float = 0.95) -> MeanCI:
    """The mean of ``values`` and its ``level`` confidence interval, mean ± t_{(1+level)/2, n-1} s / sqrt(n)
    (s: sample standard deviation).  One value gives no interval (NaN bounds); none gives NaN."""
    x = _clean(values)
    n = len(x)
    if n == 0:
        return MeanCI(math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if n == 1:
        return MeanCI(mean, math.nan, math.nan, 1)
    half = float(stats.t.ppf((1 + level) / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return MeanCI(mean, mean - half, mean + half, n)


def sign_flip_test(diffs, exact_max: int = EXACT_MAX_PAIRS) -> TestResult:
    """Two-sided test that paired differences have mean zero.

    Up to ``exact_max`` pairs: the exact sign-flip permutation test (under the null each
    difference is as likely negative as positive; p is the share of the 2**n sign patterns whose
    |mean| is at least the observed one, so it is never below 2 / 2**n).  Above: the paired
    t-test.  All-zero differences give p = 1."""
    d = _clean(diffs)
    n = len(d)
    if n == 0:
        return TestResult(math.nan, SIGN_FLIP)
    if not np.any(d):
        return TestResult(1.0, SIGN_FLIP if n <= exact_max else PAIRED_T)
    if n <= exact_max:
        observed = abs(d.mean())
        flipped = np.abs(sign_patterns(n) @ d) / n
        return TestResult(float(np.mean(flipped >= observed * (1 - 1e-12))), SIGN_FLIP)
    if np.ptp(d) == 0:  # identical non-zero differences: no spread, the effect is certain
        return TestResult(0.0, PAIRED_T)
    t = d.mean() / (d.std(ddof=1) / math.sqrt(n))  # as scipy.stats.ttest_rel, without its per-call overhead
    return TestResult(float(2 * stats.t.sf(abs(t), n - 1)), PAIRED_T)


def paired_test(a, b, exact_max: int = EXACT_MAX_PAIRS) -> TestResult:
    """:func:`sign_flip_test` of ``b - a`` (``a[i]`` and ``b[i]``: the same seed)."""
    a, b = _clean(a), _clean(b)
    if len(a) != len(b):
        raise UnetlabError(f"paired test: {len(a)} baseline values but {len(b)} others (pairs must match)")
    return sign_flip_test(b - a, exact_max)


def welch_test(a, b) -> TestResult:
    """Welch's unequal-variance t-test of mean(b) - mean(a), for runs without a seed partner."""
    a, b = _clean(a), _clean(b)
    if len(a) < 2 or len(b) < 2:
        return TestResult(math.nan, WELCH)
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return TestResult(1.0 if a[0] == b[0] else 0.0, WELCH)
    with warnings.catch_warnings():  # one group without spread is valid input, not lost precision
        warnings.simplefilter("ignore", RuntimeWarning)
        return TestResult(float(stats.ttest_ind(b, a, equal_var=False).pvalue), WELCH)


def welch_ci(a, b, level: float = 0.95) -> MeanCI:
    """mean(b) - mean(a) and its Welch-Satterthwaite ``level`` interval (n: the smaller group)."""
    a, b = _clean(a), _clean(b)
    diff = float(b.mean() - a.mean()) if len(a) and len(b) else math.nan
    if len(a) < 2 or len(b) < 2:
        return MeanCI(diff, math.nan, math.nan, min(len(a), len(b)))
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return MeanCI(diff, diff, diff, min(len(a), len(b)))
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = float(stats.t.ppf((1 + level) / 2, df) * se)
    return MeanCI(diff, diff - half, diff + half, min(len(a), len(b)))


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values (same order as given; NaNs stay NaN and do not count):
    the i-th smallest of m becomes max over j <= i of min(1, (m - j + 1) p_(j))."""
    p = _clean(pvalues)
    out = np.full(len(p), math.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = len(valid)
    if m == 0:
        return out
    order = valid[np.argsort(p[valid], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


def paired_power(n: int, effect: float, alpha: float = 0.05) -> float:
    """Power of the two-sided paired t-test with ``n`` pairs at standardized effect ``effect``
    (mean difference / SD of differences), from the noncentral t distribution."""
    if n < 2:
        return 0.0
    df = n - 1
    crit = stats.t.ppf(1 - alpha / 2, df)
    nc = abs(effect) * math.sqrt(n)
    return float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))


def seeds_needed(diff: float, sd: float, alpha: float = 0.05, power: float = 0.8, limit: int = 10 ** 6) -> float:
    """The fewest seed pairs for which a paired t-test detects a true mean difference ``diff``
    (differences' SD ``sd``) with probability ``power`` at level ``alpha``.  ``inf`` for a zero
    effect (or beyond ``limit``), NaN when ``diff`` or ``sd`` is unknown, 2 when ``sd`` is 0."""
    if diff is None or sd is None or math.isnan(diff) or math.isnan(sd):
        return math.nan
    if diff == 0:
        return math.inf
    if sd == 0:
        return 2
    effect = abs(diff) / sd
    low, high = 2, 2
    while paired_power(high, effect, alpha) < power:
        low, high = high, high * 2
        if high > limit:
            return math.inf
    while low < high:  # power grows with n: the smallest n that reaches it
        mid = (low + high) // 2
        if paired_power(mid, effect, alpha) >= power:
            high = mid
        else:
            low = mid + 1
    return high


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of ``metric`` (a table column) is the better one."""
    base = metric[:-3] if metric.endswith(" se") else metric
    if base in LOWER_IS_BETTER or base.split("/")[0] in LOWER_IS_BETTER:
        return True
    if base in HIGHER_IS_BETTER:
        return False
    raise UnetlabError(f"metric {metric!r}: no known direction (lower is better: {', '.join(LOWER_IS_BETTER)}; "
                       f"higher is better: {', '.join(HIGHER_IS_BETTER)})")


def verdict(diff: float, p: float, lower_better: bool, alpha: float = 0.05) -> str:
    """``better``, ``worse`` or ``undecided``: whether the variant (``diff`` = variant - baseline)
    beats the baseline, with ``p`` (adjusted for the comparisons made) below ``alpha``."""
    if p is None or diff is None or math.isnan(p) or math.isnan(diff) or p >= alpha or diff == 0:
        return "undecided"
    return "better" if (diff < 0) == lower_better else "worse"


def min_deciding_pairs(alpha: float = 0.05, comparisons: int = 1) -> int:
    """The fewest pairs with which the exact test's smallest p-value (2 / 2**n), multiplied by
    Holm's factor for the smallest of ``comparisons`` p-values, falls below ``alpha``."""
    return next(k for k in range(1, 1024) if comparisons * 2.0 / 2 ** k < alpha)


def decision_note(pairs: int, method: str, alpha: float = 0.05, comparisons: int = 1) -> str:
    """A note when the exact test cannot reach ``alpha`` with this many pairs whatever the effect:
    its smallest p-value is 2 / 2**pairs, and Holm multiplies the smallest by the ``comparisons`` made."""
    need = min_deciding_pairs(alpha, comparisons)
    if method != SIGN_FLIP or pairs < 1 or pairs >= need:
        return ""
    among = f" among {comparisons} comparisons" if comparisons > 1 else ""
    return f"n={pairs}: the exact test cannot decide below {need} seeds{among}"
