"""Alternative time embeddings: Gaussian Fourier features (score SDE) and a learned table."""
from __future__ import annotations

from ..blocks.time_embedding import FOURIER_OPTIONS, LEARNED_OPTIONS, GaussianFourierEmbedding, LearnedEmbedding
from ..hookspecs import hookimpl
from ..registry import BlockDef


@hookimpl
def unetlab_blocks():
    return [
        BlockDef("time_embedding", "fourier", GaussianFourierEmbedding, FOURIER_OPTIONS,
                 "Gaussian Fourier features of t * input_scale, then MLP"),
        BlockDef("time_embedding", "learned", LearnedEmbedding, LEARNED_OPTIONS,
                 "a learned table indexed by t, then MLP"),
    ]
