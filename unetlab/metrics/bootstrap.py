"""Scores of generated features with their evaluation noise: a bootstrap over the generated samples.

The features are computed once; each of ``B`` replicates resamples the generated vectors with
replacement (seeded) and recomputes only the distances.  A score's ``se`` is the replicates'
standard deviation and ``ci_low``/``ci_high`` their 2.5 and 97.5 percentiles, shifted by the
bootstrap's estimate of its own bias (mean replicate minus the score).  The shift matters: a
resample holds about 63% distinct vectors, which moves a Frechet distance up (its small-sample
bias grows) and recall and coverage down, often by more than the spread itself, so the plain
percentile interval would miss the score it describes.  The real side is fixed: it is the
reference, not a sample of the run being scored.
"""
from __future__ import annotations

import numpy as np

from .distances import KID, PRDCParts, frechet_from_stats, gaussian, kid, polynomial_kernel, psd_sqrt

#: Replicates of the bootstrap unless the spec says otherwise (eval.bootstrap).
BOOTSTRAP = 200
#: KID's subsets for the score itself.
KID_SUBSETS, KID_SUBSET_SIZE = 100, 1000
#: KID's bootstrap replicates: the unbiased MMD^2 of each resample against at most this many real vectors.
KID_POOL = 2000
#: PRDC's neighbours.
PRDC_K = 5


#: The range each score lives in: a shifted interval is clipped to it.
BOUNDS = {"fd": (0.0, np.inf), "kid": (-np.inf, np.inf), "precision": (0.0, 1.0), "recall": (0.0, 1.0),
          "density": (0.0, np.inf), "coverage": (0.0, 1.0)}


def interval(replicates: np.ndarray, value: float, bounds: tuple = (-np.inf, np.inf)) -> dict:
    """``se`` (the replicates' standard deviation) and the 95% percentile interval of the
    replicates, shifted by the bootstrap's bias estimate (mean replicate - ``value``) and
    clipped to the score's ``bounds``."""
    replicates = np.asarray(replicates, dtype=np.float64)
    if len(replicates) < 2:
        return {"se": None, "ci_low": None, "ci_high": None}
    low, high = np.clip(np.percentile(replicates, [2.5, 97.5]) - (replicates.mean() - value), *bounds)
    return {"se": float(replicates.std(ddof=1)), "ci_low": float(low), "ci_high": float(high)}


class KIDParts:
    """Kernel matrices computed once, so that the unbiased MMD^2 of any resample of the fake
    vectors (by index) costs a matrix-vector product.  The real side is a seeded pool of at most
    ``pool`` vectors; pairs of copies of one fake vector are left out, as the vector's pair with
    itself is."""

    def __init__(self, real: np.ndarray, fake: np.ndarray, seed: int = 0, pool: int = KID_POOL):
        if len(real) > pool:
            real = real[np.sort(np.random.default_rng([seed, 10]).choice(len(real), pool, replace=False))]
        k_rr = polynomial_kernel(real, real)
        m = len(real)
        self.within_real = (k_rr.sum() - np.trace(k_rr)) / (m * (m - 1))
        self.k_ff = polynomial_kernel(fake, fake)
        self.k_ff_diagonal = np.diag(self.k_ff).copy()
        self.k_rf_sums = polynomial_kernel(real, fake).sum(0)  # per fake vector: its kernel sum over the pool
        self.n_real = m

    def mmd2(self, index: np.ndarray) -> float:
        counts = np.bincount(index, minlength=len(self.k_ff)).astype(np.float64)
        n = len(index)
        pairs = n * n - (counts ** 2).sum()
        within_fake = (counts @ self.k_ff @ counts - (counts ** 2) @ self.k_ff_diagonal) / max(pairs, 1)
        across = counts @ self.k_rf_sums / (self.n_real * n)
        return float(self.within_real + within_fake - 2.0 * across)


def score_features(real: np.ndarray | None, fake: np.ndarray, bootstrap: int = BOOTSTRAP, seed: int = 0,
                   real_stats: tuple | None = None, extra: bool = True) -> dict:
    """The Frechet distance of ``fake`` to the real features (or to ``real_stats`` = (mu, sigma)
    alone), with its bootstrap ``se``/``ci_low``/``ci_high``, and -- when real features are given
    and ``extra`` -- ``metrics``: KID and precision/recall/density/coverage, each with its own.

    PRDC compares the fakes with as many real vectors (a seeded subset when there are more), as
    Naeem et al. do: its k-NN balls depend on how many vectors each set has.
    """
    fake = np.asarray(fake, dtype=np.float64)
    mu_r, sigma_r = real_stats if real_stats is not None else gaussian(real)
    sqrt_r = psd_sqrt(sigma_r)
    value = frechet_from_stats(mu_r, sigma_r, *gaussian(fake), sqrt_a=sqrt_r)
    rng = np.random.default_rng([seed, 7])
    draws = [rng.integers(0, len(fake), len(fake)) for _ in range(bootstrap)]
    fd = [frechet_from_stats(mu_r, sigma_r, *gaussian(fake[i]), sqrt_a=sqrt_r) for i in draws]
    record = {"value": value, **interval(fd, value, BOUNDS["fd"]), "bootstrap": bootstrap, "metrics": {}}
    if real is None or not extra:
        return record
    real = np.asarray(real, dtype=np.float64)
    metrics = record["metrics"]
    kid_value: KID = kid(real, fake, KID_SUBSETS, KID_SUBSET_SIZE, seed=seed)
    kid_parts = KIDParts(real, fake, seed) if draws else None
    kids = [kid_parts.mmd2(i) for i in draws]
    metrics["kid"] = {"value": kid_value.mean, **interval(kids, kid_value.mean, BOUNDS["kid"]), "subset_std": kid_value.std}
    if min(len(real), len(fake)) > PRDC_K:
        if len(real) > len(fake):
            real = real[np.sort(np.random.default_rng([seed, 9]).choice(len(real), len(fake), replace=False))]
        parts = PRDCParts(real, fake, PRDC_K)
        point, replicates = parts.scores(), [parts.scores(i) for i in draws]
        for name, v in point.items():
            metrics[name] = {"value": v, **interval([r[name] for r in replicates], v, BOUNDS[name])}
    return record
