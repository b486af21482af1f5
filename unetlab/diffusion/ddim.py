"""DDIM (Song et al. 2021) and DDPM ancestral sampling.

``ddim_step`` is a pure function of scalars and tensors; the loops call the model and pick the
timesteps exactly as the DDIM paper's code does.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import UnetlabError
from ..frameworks import backend_for, framework_of


def ddim_timesteps(T: int, steps: int, skip: str = "uniform") -> list[int]:
    """Timesteps visited: uniform ``range(0, T, T // S)`` or quadratic
    ``int(s) for s in linspace(0, sqrt(0.8 T), S) ** 2``, in increasing order."""
    if not 0 < steps <= T:
        raise UnetlabError(f"DDIM steps must be in 1..{T}, got {steps}")
    if skip == "uniform":
        return list(range(0, T, T // steps))
    if skip == "quadratic":
        return [int(s) for s in np.linspace(0, np.sqrt(T * 0.8), steps) ** 2]
    raise UnetlabError(f"unknown DDIM skip {skip!r} (uniform, quadratic)")


def ddim_step(x_t, eps, abar_t: float, abar_next: float, eta: float, noise=None):
    """One DDIM update from x_t to x_next given the predicted noise ``eps``.

    x0 = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t);  c1 = eta sqrt((1 - a_t/a_n)(1 - a_n)/(1 - a_t));
    c2 = sqrt(1 - a_n - c1^2);  x_next = sqrt(a_n) x0 + c1 noise + c2 eps.
    """
    x0 = (x_t - eps * math.sqrt(1.0 - abar_t)) * (1.0 / math.sqrt(abar_t))
    c1 = eta * math.sqrt((1.0 - abar_t / abar_next) * (1.0 - abar_next) / (1.0 - abar_t))
    c2 = math.sqrt(max(1.0 - abar_next - c1 ** 2, 0.0))
    x_next = x0 * math.sqrt(abar_next) + eps * c2
    if c1 > 0.0:
        if noise is None:
            raise UnetlabError("ddim_step: eta > 0 needs noise")
        x_next = x_next + noise * c1
    return x_next


def predict_eps(model, x, t: int, prediction: str, abar_t: float):
    """The model's output at timestep ``t`` turned into a noise prediction."""
    backend = backend_for(framework_of(x))
    out = model(x, backend.full_timesteps(x.shape[0], t))
    if prediction == "eps":
        return out
    if prediction == "x0":
        return (x - out * math.sqrt(abar_t)) * (1.0 / math.sqrt(1.0 - abar_t))
    if prediction == "v":
        return x * math.sqrt(1.0 - abar_t) + out * math.sqrt(abar_t)
    raise UnetlabError(f"unknown prediction {prediction!r} (eps, x0, v)")


def _noise_source(x, noises, count):
    backend = backend_for(framework_of(x))
    if noises is not None:
        noises = list(noises)
        if len(noises) < count:
            raise UnetlabError(f"noises: {count} tensors needed, {len(noises)} given")
        return iter(noises)
    return (backend.randn_like(x) for _ in range(count))


def ddim_sample(model, x_T, *, betas, steps: int, eta: float = 0.0, skip: str = "uniform",
                noises=None, prediction: str = "eps", progress=None):
    """Run DDIM from ``x_T`` (a tensor of the model's framework) and return x_0.

    ``betas``: the training schedule (length T); ``steps``: S; ``noises``: one tensor per step
    for the stochastic term when ``eta > 0`` (drawn from the framework's RNG when omitted).
    ``progress`` is an optional callable invoked once per step.
    """
    betas = np.asarray(betas, dtype=np.float64)
    abar = np.cumprod(1.0 - betas)
    seq = ddim_timesteps(len(betas), steps, skip)
    seq_next = [-1] + seq[:-1]
    noise = _noise_source(x_T, noises, len(seq)) if eta > 0 else None
    backend = backend_for(framework_of(x_T))
    x = x_T
    with backend.no_grad():
        for t, t_next in zip(reversed(seq), reversed(seq_next)):
            a_t = float(abar[t])
            a_next = float(abar[t_next]) if t_next >= 0 else 1.0
            eps = predict_eps(model, x, t, prediction, a_t)
            x = ddim_step(x, eps, a_t, a_next, eta, next(noise) if noise is not None else None)
            if progress:
                progress()
    return x


def ddpm_sample(model, x_T, *, betas, noises=None, variance: str = "fixedsmall",
                prediction: str = "eps", progress=None):
    """DDPM ancestral sampling over all T steps (Ho et al. 2020, Algorithm 2).

    ``variance``: ``fixedsmall`` (posterior variance beta~_t) or ``fixedlarge`` (beta_t).
    ``noises``: one tensor per step (T of them; the last step adds no noise).
    """
    if variance not in ("fixedsmall", "fixedlarge"):
        raise UnetlabError(f"unknown DDPM variance {variance!r} (fixedsmall, fixedlarge)")
    betas = np.asarray(betas, dtype=np.float64)
    abar = np.cumprod(1.0 - betas)
    T = len(betas)
    noise = _noise_source(x_T, noises, T)
    backend = backend_for(framework_of(x_T))
    x = x_T
    with backend.no_grad():
        for t in reversed(range(T)):
            a_t, beta = float(abar[t]), float(betas[t])
            a_prev = float(abar[t - 1]) if t > 0 else 1.0
            eps = predict_eps(model, x, t, prediction, a_t)
            mean = (x - eps * (beta / math.sqrt(1.0 - a_t))) * (1.0 / math.sqrt(1.0 - beta))
            z = next(noise)
            if t > 0:
                var = beta * (1.0 - a_prev) / (1.0 - a_t) if variance == "fixedsmall" else beta
                x = mean + z * math.sqrt(var)
            else:
                x = mean
            if progress:
                progress()
    return x
