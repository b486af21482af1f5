"""A group-sequential paired test: when to stop adding seeds to a variant-vs-baseline comparison.

The procedure (used by ``seeds: {min, max, until: decided}``): at each look, after n seeds of a
variant and of its baseline, the differences d_i = variant_i - baseline_i (same seed) are tested
with the **exact two-sided sign-flip permutation test** of their mean (all 2^n sign patterns;
exact for differences symmetric about 0 under the null, at any n).  Its p-value is compared with
the level that a **Lan-DeMets alpha-spending function** gives the look, over the information
fraction n / max (Pocock-type by default: alpha * ln(1 + (e - 1) t); O'Brien-Fleming-type:
2 - 2 Phi(z_{alpha/2} / sqrt t)).  The levels are combined by the union (Bonferroni) bound, so the
chance that any look of an A/A comparison says better or worse is at most alpha, whatever the
correlation between looks.  The sign-flip test can only reach the multiples of 2 / 2^n, so the
part of a look's level it cannot use (all of it below 6 seeds at 5 %) is carried to the next
look: the levels depend on (min, max, alpha, spending) only, never on the data.

Lower is better (a loss, a distance): a significant negative mean difference is ``better``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

SPENDING = ("pocock", "obrien-fleming")
#: The largest n the exact test enumerates (2^n sign patterns).
MAX_SEEDS = 20
VERDICTS = ("better", "worse", "undecided")


def spent_alpha(t: float, alpha: float = 0.05, spending: str = "pocock") -> float:
    """The Lan-DeMets spending function: the alpha spent by information fraction ``t`` in [0, 1]."""
    t = min(max(float(t), 0.0), 1.0)
    if t == 0.0:
        return 0.0
    if spending == "pocock":
        return alpha * math.log(1.0 + (math.e - 1.0) * t)
    if spending == "obrien-fleming":
        from scipy import stats

        return float(2.0 - 2.0 * stats.norm.cdf(stats.norm.ppf(1.0 - alpha / 2.0) / math.sqrt(t)))
    raise ValueError(f"unknown spending function {spending!r} (valid: {', '.join(SPENDING)})")


def usable_size(level: float, n: int) -> float:
    """The largest null rejection probability of the two-sided sign-flip test at ``n`` that is at
    most ``level``: its p-values are multiples of 2 / 2^n (continuous differences)."""
    step = 2.0 / 2 ** n
    return math.floor(level / step + 1e-12) * step


def look_levels(min_n: int, max_n: int, alpha: float = 0.05, spending: str = "pocock") -> dict[int, float]:
    """n -> the level the look at n paired seeds compares its p-value with (looks at min..max).

    Look k gets A(n_k / max) minus what earlier looks could use; their sum stays <= alpha."""
    levels, used = {}, 0.0
    for n in range(min_n, max_n + 1):
        levels[n] = max(spent_alpha(n / max_n, alpha, spending) - used, 0.0)
        used += usable_size(levels[n], n)
    return levels


@lru_cache(maxsize=None)
def sign_patterns(n: int) -> np.ndarray:
    """All 2**n patterns of +1/-1 over n pairs, one per row (cached: read it, do not change it)."""
    codes = np.arange(2 ** n)[:, None] >> np.arange(n)[None, :]
    return np.where(codes & 1, -1.0, 1.0)


def sign_flip_pvalues(diffs) -> np.ndarray:
    """Exact two-sided sign-flip p-values of the mean of each row of ``diffs`` (shape (..., n)).

    p = the fraction of the 2^n sign patterns whose |sum| is at least the observed |sum|."""
    d = np.asarray(diffs, dtype=np.float64)
    n = d.shape[-1]
    if n == 0:
        return np.ones(d.shape[:-1])
    if n > MAX_SEEDS:
        raise ValueError(f"the exact sign-flip test enumerates 2^n patterns: n is at most {MAX_SEEDS}, got {n}")
    flat = d.reshape(-1, n)
    observed = np.abs(flat.sum(axis=1))
    tolerance = 1e-9 * np.abs(flat).sum(axis=1) + 1e-15  # sums equal up to rounding count as ties
    patterns = sign_patterns(n)
    counts = np.zeros(len(flat))
    for start in range(0, len(patterns), 1 << 14):
        sums = np.abs(flat @ patterns[start:start + (1 << 14)].T)
        counts += (sums >= (observed - tolerance)[:, None]).sum(axis=1)
    return (counts / len(patterns)).reshape(d.shape[:-1])


def seeds_needed(diffs, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """Paired seeds a fixed design needs to detect the observed mean difference with ``power``:
    the normal approximation n = ((z_{1-alpha/2} + z_power) s / d)^2; None when d or s is 0 or
    unknown (fewer than 2 differences)."""
    d = np.asarray(diffs, dtype=np.float64)
    if len(d) < 2:
        return None
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if mean == 0.0 or sd == 0.0 or not math.isfinite(mean / sd):
        return None
    from scipy import stats

    z = stats.norm.ppf(1.0 - alpha / 2.0) + stats.norm.ppf(power)
    return int(math.ceil((z * sd / abs(mean)) ** 2))


@dataclass(frozen=True)
class Look:
    """The stopping rule's verdict on one variant after ``n`` paired seeds."""

    n: int
    mean: float  # mean of variant - baseline (lower is better)
    sd: float | None
    p: float
    level: float  # the level this look's p is compared with
    verdict: str  # better | worse | undecided
    final: bool  # decided, or undecided at max
    seeds_needed: int | None = None  # at max and undecided: the fixed-design estimate

    def as_record(self) -> dict:
        return {"n": self.n, "mean_diff": self.mean, "sd_diff": self.sd, "p": self.p, "level": self.level,
                "verdict": self.verdict, "final": self.final, "seeds_needed": self.seeds_needed}


def decide(diffs, min_n: int, max_n: int, alpha: float = 0.05, spending: str = "pocock") -> Look:
    """The look at n = len(diffs) paired differences (variant - baseline), min_n <= n <= max_n.

    Call it at n = min_n, min_n + 1, ... and stop at the first final look: the guarantee is for
    that sequence of looks (a decided variant gets no more seeds)."""
    d = np.asarray(diffs, dtype=np.float64)
    n = len(d)
    if not min_n <= n <= max_n:
        raise ValueError(f"a look needs between {min_n} and {max_n} paired differences, got {n}")
    level = look_levels(min_n, max_n, alpha, spending)[n]
    p = float(sign_flip_pvalues(d))
    mean = float(d.mean())
    sd = float(d.std(ddof=1)) if n > 1 else None
    decided = p <= level and mean != 0.0
    verdict = ("better" if mean < 0 else "worse") if decided else "undecided"
    final = decided or n == max_n
    needed = seeds_needed(d, alpha) if final and not decided else None
    return Look(n, mean, sd, p, level, verdict, final, needed)


def simulate(effect: float = 0.0, draws: int = 1000, min_n: int = 3, max_n: int = 10, alpha: float = 0.05,
             spending: str | None = "pocock", seed: int = 0) -> dict:
    """Run the procedure on ``draws`` synthetic comparisons with N(effect, 1) differences.

    ``spending=None`` is naive repeated testing: every look at ``alpha``.  Returns the fraction
    called better and worse, and the mean number of paired seeds used."""
    rng = np.random.default_rng(seed)
    d = rng.standard_normal((draws, max_n)) + effect
    levels = (look_levels(min_n, max_n, alpha, spending) if spending
              else {n: alpha for n in range(min_n, max_n + 1)})
    open_, verdict, used = np.ones(draws, bool), np.zeros(draws), np.full(draws, max_n)
    for n in range(min_n, max_n + 1):
        p = sign_flip_pvalues(d[:, :n])
        hit = open_ & (p <= levels[n])
        verdict[hit] = np.sign(d[hit, :n].mean(axis=1))
        used[hit] = n
        open_ &= ~hit
    return {"better": float((verdict < 0).mean()), "worse": float((verdict > 0).mean()),
            "decided": float((verdict != 0).mean()), "mean_seeds": float(used.mean())}
