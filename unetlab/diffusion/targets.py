"""Training inputs and targets: q(x_t | x_0) and the eps / x0 / v regression targets."""
from __future__ import annotations

import numpy as np


def sample_timesteps(rng: np.random.Generator, n: int, T: int, method: str = "uniform") -> np.ndarray:
    """``n`` training timesteps in [0, T): uniform, or antithetic (t and T-1-t in pairs)."""
    if method == "antithetic":
        half = rng.integers(0, T, size=(n + 1) // 2)
        return np.concatenate([half, T - 1 - half])[:n].astype(np.int64)
    return rng.integers(0, T, size=n).astype(np.int64)


def noisy_inputs(x0, noise, sqrt_ab, sqrt_1m_ab, prediction: str = "eps"):
    """``(x_t, target)`` for a batch; ``sqrt_ab`` and ``sqrt_1m_ab`` broadcast as (N, 1, 1, 1).

    Pure arithmetic, so it runs on numpy arrays (host noise, identical in both frameworks) or
    on device tensors alike.
    """
    x_t = sqrt_ab * x0 + sqrt_1m_ab * noise
    if prediction == "eps":
        target = noise
    elif prediction == "x0":
        target = x0
    else:  # v-prediction (Salimans & Ho 2022)
        target = sqrt_ab * noise - sqrt_1m_ab * x0
    return x_t, target
