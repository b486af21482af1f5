"""Normalisation blocks for the ``norm`` slot, used by every residual and attention block
and before the output conv.  Both keep the channel count and read the model-wide
``norm_groups`` and ``norm_eps`` from the build context."""
from __future__ import annotations

import numpy as np
from einops import rearrange, reduce

from ..portable import portable


@portable
def GroupNorm(ops):
    """GroupNorm with a learned per-channel scale and shift (DDPM, ADM)."""

    class GroupNorm(ops.GroupNorm):
        takes_time_embedding = False

        def __init__(self, ctx, in_channels, out_channels):
            super().__init__(ctx.norm_groups, in_channels, eps=ctx.norm_eps, affine=True)

    return GroupNorm


@portable
def ChannelRMSNorm(ops):
    """RMS normalisation over the channels of each pixel, with a learned per-channel scale
    (no mean subtraction, no shift): ``x / sqrt(mean_c(x^2) + eps) * weight``."""

    class ChannelRMSNorm(ops.Module):
        takes_time_embedding = False

        def __init__(self, ctx, in_channels, out_channels):
            super().__init__()
            self.eps = ctx.norm_eps
            self.weight = ops.Parameter(np.ones(in_channels, np.float32))

        def forward(self, x):
            mean_square = reduce(x * x, "b c h w -> b 1 h w", "mean")
            return x * (mean_square + self.eps) ** -0.5 * rearrange(self.weight, "c -> 1 c 1 1")

    return ChannelRMSNorm
