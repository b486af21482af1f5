"""Distances between two sets of feature vectors: Frechet distance, KID and PRDC.

Every function takes (N, D) arrays of real and generated ("fake") features and knows nothing
of images or networks:

- :func:`frechet_distance`: the Frechet distance between Gaussians fitted to the two sets
  (FID when the features are Inception's).
- :func:`kid`: Kernel Inception Distance (Binkowski et al. 2018), the unbiased MMD^2 estimator
  with the cubic polynomial kernel ``k(x, y) = (x.y / d + 1)^3``, averaged over random subsets.
- :func:`prdc`: precision and recall (Kynkaanniemi et al. 2019), density and coverage (Naeem et
  al. 2020), from k-nearest-neighbour balls.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..errors import UnetlabError


def _check(features: np.ndarray, what: str, at_least: int = 2) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise UnetlabError(f"{what} features: expected a (N, D) array, got shape {features.shape}")
    if len(features) < at_least:
        raise UnetlabError(f"{what} features: need at least {at_least} vectors, got {len(features)}")
    return features


# -- Frechet distance --------------------------------------------------------------------------

def gaussian(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (unbiased, rows are samples) of a feature set."""
    features = _check(features, "the")
    return features.mean(0), np.cov(features, rowvar=False)


def psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """The symmetric square root of a covariance matrix (negative rounding eigenvalues as 0)."""
    from scipy import linalg

    values, vectors = linalg.eigh(sigma)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def trace_sqrt_product(sqrt_a: np.ndarray, sigma_b: np.ndarray) -> float:
    """tr sqrt(A B) for covariances A = sqrt_a^2 and B: the eigenvalues of the symmetric
    sqrt(A) B sqrt(A) are those of A B, so no non-symmetric matrix root is needed."""
    from scipy import linalg

    values = linalg.eigvalsh(sqrt_a @ sigma_b @ sqrt_a)
    return float(np.sqrt(np.clip(values, 0, None)).sum())


def frechet_from_stats(mu_a, sigma_a, mu_b, sigma_b, sqrt_a: np.ndarray | None = None) -> float:
    """Frechet distance |mu_a - mu_b|^2 + tr(A + B - 2 sqrt(A B)) between two Gaussians
    (``sqrt_a``: :func:`psd_sqrt` of ``sigma_a``, when it is already known)."""
    mu_a, mu_b = np.atleast_1d(mu_a), np.atleast_1d(mu_b)
    sigma_a, sigma_b = np.atleast_2d(sigma_a), np.atleast_2d(sigma_b)
    if mu_a.shape != mu_b.shape or sigma_a.shape != sigma_b.shape:
        raise UnetlabError(f"Frechet distance: feature sizes differ ({mu_a.shape[0]} and {mu_b.shape[0]})")
    sqrt_a = psd_sqrt(sigma_a) if sqrt_a is None else sqrt_a
    diff = mu_a - mu_b
    value = diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2.0 * trace_sqrt_product(sqrt_a, sigma_b)
    return float(max(value, 0.0))


def frechet_distance(real: np.ndarray, fake: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two (N, D) feature sets."""
    real, fake = _check(real, "real"), _check(fake, "generated")
    return frechet_from_stats(*gaussian(real), *gaussian(fake))


# -- KID -------------------------------------------------------------------------------------

class KID(NamedTuple):
    """KID: the mean of the unbiased MMD^2 estimates over subsets, and their standard deviation."""
    mean: float
    std: float


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """KID's kernel matrix ``(x.y / d + 1)^3`` between the rows of ``x`` and of ``y``."""
    base = x @ y.T / x.shape[1] + 1.0
    return base * base * base


def mmd2_unbiased(k_xx: np.ndarray, k_yy: np.ndarray, k_xy: np.ndarray) -> float:
    """The unbiased MMD^2 estimate from the kernel matrices of two equal-sized samples."""
    m = k_xx.shape[0]
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2.0 * k_xy.mean())


def kid(real: np.ndarray, fake: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> KID:
    """KID between two feature sets: unbiased MMD^2 on ``subsets`` random subsets of
    ``subset_size`` vectors of each (capped at the smaller set; drawn without replacement)."""
    real, fake = _check(real, "real"), _check(fake, "generated")
    if subsets < 1:
        raise UnetlabError(f"KID: subsets must be at least 1, got {subsets}")
    m = min(subset_size, len(real), len(fake))
    if m < 2:
        raise UnetlabError(f"KID: subset_size must be at least 2, got {subset_size}")
    rng = np.random.default_rng(seed)
    values = np.empty(subsets)
    for s in range(subsets):
        x = real[rng.choice(len(real), m, replace=False)]
        y = fake[rng.choice(len(fake), m, replace=False)]
        values[s] = mmd2_unbiased(polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y))
    return KID(float(values.mean()), float(values.std()))


# -- precision, recall, density, coverage ------------------------------------------------------

def knn_radii(features: np.ndarray, k: int) -> np.ndarray:
    """Each vector's distance to its k-th nearest other vector of the same set."""
    from sklearn.neighbors import NearestNeighbors

    if len(features) <= k:
        raise UnetlabError(f"PRDC: k={k} neighbours need more than {k} vectors in each set, got {len(features)}")
    distances, _ = NearestNeighbors(n_neighbors=k + 1).fit(features).kneighbors(features)
    return distances[:, k]  # column 0 is the vector itself


class PRDCParts:
    """What PRDC needs, computed once: real-to-fake distances and each set's k-NN radii.
    :meth:`scores` then gives PRDC of any resample of the fake vectors (by index) cheaply."""

    def __init__(self, real: np.ndarray, fake: np.ndarray, k: int = 5):
        from sklearn.metrics import pairwise_distances

        real, fake = _check(real, "real"), _check(fake, "generated")
        self.k = k
        real_radii, fake_radii = knn_radii(real, k), knn_radii(fake, k)
        distances = pairwise_distances(real, fake)  # (n_real, n_fake)
        self.in_real_ball = distances < real_radii[:, None]  # fake j inside real i's ball
        self.in_fake_ball = distances < fake_radii[None, :]  # real i inside fake j's ball
        self.balls_holding = self.in_real_ball.sum(0)  # per fake: how many real balls hold it

    def scores(self, index: np.ndarray | None = None) -> dict:
        """PRDC of the fake vectors ``index`` (all of them when None); a fake vector drawn
        twice counts twice where the metric averages over fakes, once where it asks whether
        any fake vector reaches a real one, and keeps the k-NN ball of the original sample."""
        index = np.arange(self.in_real_ball.shape[1]) if index is None else np.asarray(index)
        distinct = np.unique(index)
        return {
            "precision": float((self.balls_holding[index] > 0).mean()),
            "recall": float(self.in_fake_ball[:, distinct].any(1).mean()),
            "density": float(self.balls_holding[index].mean() / self.k),
            "coverage": float(self.in_real_ball[:, distinct].any(1).mean()),
        }


def prdc(real: np.ndarray, fake: np.ndarray, k: int = 5) -> dict:
    """Precision, recall, density and coverage of ``fake`` against ``real`` with k-NN balls:
    precision, the share of fakes inside some real ball; recall, the share of reals inside some
    fake ball; density, the mean number of real balls holding a fake, over k; coverage, the share
    of real balls holding at least one fake."""
    return PRDCParts(real, fake, k).scores()
