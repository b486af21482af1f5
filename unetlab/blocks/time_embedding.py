"""Time embeddings: a feature of the integer timestep, then a 2-layer MLP (``dense.0``,
``dense.1``) to the embedding width."""
from __future__ import annotations

import math

import numpy as np
from einops import rearrange

from ..options import Option
from ..portable import portable
from ..seeds import MAX_SEED

SINUSOIDAL_OPTIONS = (
    Option("order", str, "sin_cos", "concatenation order of the halves", choices=("sin_cos", "cos_sin")),
    Option("freq_shift", float, 1.0, "frequencies exp(-ln(max_period) * i / (half - freq_shift)); "
           "DDPM uses 1, ADM 0", low=0.0, high=1.0),
    Option("max_period", float, 10000.0, "longest period of the sinusoids", low=1.0, low_open=True),
)
FOURIER_OPTIONS = (
    Option("scale", float, 16.0, "standard deviation of the random frequencies"),
    Option("input_scale", float, 0.001, "timesteps are multiplied by this first (1/T maps to [0, 1))",
           low=0.0, low_open=True),
    Option("seed", int, 0, "seed of the fixed random frequencies", low=0, high=MAX_SEED),
)
LEARNED_OPTIONS = (
    Option("num_embeddings", int, 1000, "table size: the largest timestep + 1", low=1),
)


def sinusoidal_frequencies(dim: int, freq_shift: float, max_period: float) -> np.ndarray:
    half = dim // 2
    return np.exp(-math.log(max_period) * np.arange(half, dtype=np.float64) / (half - freq_shift)).astype(np.float32)


def fourier_frequencies(dim: int, scale: float, seed: int) -> np.ndarray:
    return (np.random.RandomState(seed).randn(dim // 2) * scale).astype(np.float32)


def _outer(ops, t, freqs: np.ndarray):
    """(N,) times (D,) frequencies -> (N, D)."""
    return rearrange(t, "n -> n 1") * rearrange(ops.constant(freqs, like=t), "d -> 1 d")


def _mlp(ops, module, in_channels, out_channels):
    module.dense = ops.ModuleList([ops.Linear(in_channels, out_channels), ops.Linear(out_channels, out_channels)])


def _features_to_embedding(ops, module, feats, dim):
    if dim % 2:
        feats = ops.pad(feats, (0, 1, 0, 0))
    return module.dense[1](ops.silu(module.dense[0](feats)))


@portable
def SinusoidalEmbedding(ops):
    """Sinusoidal features of t (DDPM, ADM), then the MLP."""

    class SinusoidalEmbedding(ops.Module):
        takes_time_embedding = False

        def __init__(self, ctx, in_channels, out_channels, *, order="sin_cos", freq_shift=1.0,
                     max_period=10000.0):
            super().__init__()
            self.dim = in_channels
            self.sin_first = order == "sin_cos"
            self.freqs = sinusoidal_frequencies(in_channels, freq_shift, max_period)
            _mlp(ops, self, in_channels, out_channels)

        def forward(self, t):
            args = _outer(ops, ops.as_float(t), self.freqs)
            halves = [ops.sin(args), ops.cos(args)]
            feats = ops.cat(halves if self.sin_first else halves[::-1], dim=1)
            return _features_to_embedding(ops, self, feats, self.dim)

    return SinusoidalEmbedding


@portable
def GaussianFourierEmbedding(ops):
    """Gaussian Fourier features of t (score SDE), then the MLP."""

    class GaussianFourierEmbedding(ops.Module):
        takes_time_embedding = False

        def __init__(self, ctx, in_channels, out_channels, *, scale=16.0, input_scale=0.001, seed=0):
            super().__init__()
            self.dim = in_channels
            self.input_scale = input_scale
            self.freqs = fourier_frequencies(in_channels, scale, seed) * (2 * math.pi)
            _mlp(ops, self, in_channels, out_channels)

        def forward(self, t):
            args = _outer(ops, ops.as_float(t) * self.input_scale, self.freqs)
            feats = ops.cat([ops.sin(args), ops.cos(args)], dim=1)
            return _features_to_embedding(ops, self, feats, self.dim)

    return GaussianFourierEmbedding


@portable
def LearnedEmbedding(ops):
    """A learned table indexed by t, then the MLP."""

    class LearnedEmbedding(ops.Module):
        takes_time_embedding = False

        def __init__(self, ctx, in_channels, out_channels, *, num_embeddings=1000):
            super().__init__()
            self.table = ops.Embedding(num_embeddings, in_channels)
            _mlp(ops, self, in_channels, out_channels)

        def forward(self, t):
            return self.dense[1](ops.silu(self.dense[0](self.table(t))))

    return LearnedEmbedding
