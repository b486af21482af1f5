"""Beta schedules (numpy, float64): linear (DDPM), quadratic, cosine (improved DDPM)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import UnetlabError


def make_betas(schedule: str, T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    """The ``T`` betas of ``schedule`` as float64."""
    if schedule == "linear":
        return np.linspace(beta_start, beta_end, T, dtype=np.float64)
    if schedule == "quadratic":
        return np.linspace(beta_start ** 0.5, beta_end ** 0.5, T, dtype=np.float64) ** 2
    if schedule == "cosine":
        s = 0.008
        steps = np.arange(T + 1, dtype=np.float64) / T
        alpha_bar = np.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        return np.clip(1 - alpha_bar[1:] / alpha_bar[:-1], 0.0, 0.999)
    raise UnetlabError(f"unknown schedule {schedule!r} (schedules: linear, quadratic, cosine)")


@dataclass(frozen=True)
class Schedule:
    """A beta schedule and the quantities derived from it."""

    betas: np.ndarray

    @property
    def T(self) -> int:
        return len(self.betas)

    @property
    def alphas_cumprod(self) -> np.ndarray:
        return np.cumprod(1.0 - self.betas)


def make_schedule(diffusion: dict) -> Schedule:
    """The :class:`Schedule` of a resolved ``diffusion`` spec section."""
    return Schedule(make_betas(diffusion["schedule"], diffusion["T"], diffusion["beta_start"], diffusion["beta_end"]))
