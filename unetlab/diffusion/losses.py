"""The training loss, written once for both frameworks: ``mse`` or the DDIM code's ``l2``.

``mse`` is the mean over every pixel of the batch (Ho et al.'s simplified objective as most
code writes it); ``l2`` sums the squared error over each image's pixels and averages over the
batch, as ermongroup/ddim does.  The two differ by the factor C*H*W, which matters under
gradient clipping: with ``l2`` a clip at 1.0 acts on almost every step.
"""
from __future__ import annotations

import numpy as np

from ..errors import UnetlabError
from ..frameworks import backend_for, framework_of, ops_for
from .targets import noisy_inputs

LOSSES = ("mse", "l2")
PREDICTIONS = ("eps", "x0", "v")


def reduce_loss(error, loss: str = "mse"):
    """The scalar loss of a batch's ``error`` (output - target, shape (N, ...))."""
    if loss == "mse":
        return (error * error).mean()
    if loss == "l2":
        return (error * error).sum() * (1.0 / error.shape[0])
    raise UnetlabError(f"unknown loss {loss!r} (losses: {', '.join(LOSSES)})")


def noise_coefficients(betas, t) -> tuple[np.ndarray, np.ndarray]:
    """sqrt(abar_t) and sqrt(1 - abar_t) for host timesteps ``t``, float32, shaped (N, 1, 1, 1)."""
    abar = np.cumprod(1.0 - np.asarray(betas, dtype=np.float64))
    t = np.asarray(t, dtype=np.int64)
    if t.ndim != 1 or t.size and (t.min() < 0 or t.max() >= len(abar)):
        raise UnetlabError(f"timesteps must be a 1-D array in [0, {len(abar)}), got shape {t.shape}")
    sa = np.sqrt(abar)[t].astype(np.float32).reshape(-1, 1, 1, 1)
    s1 = np.sqrt(1.0 - abar)[t].astype(np.float32).reshape(-1, 1, 1, 1)
    return sa, s1


def training_loss(model, x0, t, noise, *, betas, loss: str = "mse", prediction: str = "eps"):
    """The scalar loss the trainer minimises for one batch, as a tensor of ``x0``'s framework.

    ``model(x_t, t)`` is the network; ``x0`` and ``noise`` are (N, C, H, W) tensors of one
    framework; ``t`` holds N timesteps (numpy or a tensor); ``betas`` is the schedule (length T).
    x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise, and the model's output is compared with
    the ``prediction`` target (eps: the noise; x0; v) by ``loss`` (mse or l2).
    """
    if loss not in LOSSES:
        raise UnetlabError(f"unknown loss {loss!r} (losses: {', '.join(LOSSES)})")
    if prediction not in PREDICTIONS:
        raise UnetlabError(f"unknown prediction {prediction!r} (predictions: {', '.join(PREDICTIONS)})")
    framework = framework_of(x0)
    backend, ops = backend_for(framework), ops_for(framework)
    t_host = t if isinstance(t, np.ndarray) else backend.numpy(t)
    if len(t_host) != x0.shape[0]:
        raise UnetlabError(f"training_loss: {len(t_host)} timesteps for a batch of {x0.shape[0]}")
    sa, s1 = noise_coefficients(betas, t_host)
    x_t, target = noisy_inputs(x0, noise, backend.tensor(sa), backend.tensor(s1), prediction)
    t_dev = backend.tensor(t_host.astype(np.int64)) if isinstance(t, np.ndarray) else t
    out = ops.as_float(model(x_t, t_dev))
    return reduce_loss(out - target, loss)
