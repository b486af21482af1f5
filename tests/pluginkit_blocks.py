"""Blocks a plugin author might write, registered by tests of the plugin kit (``-p pluginkit_blocks``):
each written once against ``ops``.

- ``attention/linear``: linear attention (softmax over channels for queries, over positions for
  keys), a learned temperature through ``ops.exp``, the output projection zero-initialised;
  ``heads`` must divide the channels (a ``ValueError`` otherwise).
- ``attention/linear_jittor_x3``: the same, its Jittor path's residual branch multiplied by 3
  (a parity bug that the zero-initialised projection hides at initialisation).
- ``resblock/convnext``: a ConvNeXt-style block: depthwise 7x7 conv, channel LayerNorm, grouped
  pointwise convs with ReLU, layer scale, time embedding added after the depthwise conv.
- ``attention/fails_in_forward``: builds, then fails on its first call (a run that fails before
  its first step).
"""
from __future__ import annotations

import numpy as np
from einops import rearrange, reduce

import unetlab

HEADS = unetlab.Option("heads", int, 1, "attention heads; must divide the channels")


@unetlab.portable
def LinearAttention(ops):
    """Linear attention: softmax(q) over channels, softmax(k) over positions, q (k^T v)."""

    class LinearAttention(ops.Module):
        takes_time_embedding = False

        def __init__(self, ctx, in_channels, out_channels, *, heads=1):
            super().__init__()
            if heads < 1 or in_channels % heads:
                raise ValueError(f"heads must divide {in_channels} channels")
            self.heads = heads
            self.norm = ctx.norm(in_channels)
            self.qkv = ops.Conv2d(in_channels, 3 * in_channels, 1)
            self.log_temperature = ops.Parameter(np.zeros(1, np.float32))
            self.proj_out = ops.zero_module(ops.Conv2d(in_channels, in_channels, 1))

        def forward(self, x):
            h = self.norm(x)
            q, k, v = (rearrange(a, "b (heads c) h w -> b heads (h w) c", heads=self.heads)
                       for a in ops.chunk(self.qkv(h), 3, dim=1))
            q = ops.softmax(q * ops.exp(self.log_temperature), dim=-1)
            k = ops.softmax(k, dim=-2)
            context = k.permute(0, 1, 3, 2) @ v
            out = rearrange(q @ context, "b heads (h w) c -> b (heads c) h w", h=x.shape[2])
            return x + self.proj_out(out)

    return LinearAttention


@unetlab.portable
def LinearAttentionJittorX3(ops):
    """LinearAttention whose Jittor residual branch is three times too large."""

    class LinearAttentionJittorX3(LinearAttention.of(ops)):
        def forward(self, x):
            branch = super().forward(x) - x
            return x + branch * (3.0 if ops.NAME == "jittor" else 1.0)

    return LinearAttentionJittorX3


EXPANSION = unetlab.Option("expansion", int, 4, "width of the pointwise MLP, times the output width")
PW_GROUPS = unetlab.Option("pw_groups", int, 1, "groups of the pointwise convs")


@unetlab.portable
def ConvNeXtBlock(ops):
    """ConvNeXt-style residual block for the resblock slot."""

    class ConvNeXtBlock(ops.Module):
        takes_time_embedding = True

        def __init__(self, ctx, in_channels, out_channels, *, expansion=4, pw_groups=1):
            super().__init__()
            hidden = expansion * out_channels
            if in_channels % pw_groups or hidden % pw_groups or out_channels % pw_groups:
                raise ValueError(f"pw_groups={pw_groups} must divide {in_channels}, {hidden} and {out_channels}")
            self.eps = ctx.norm_eps
            self.dwconv = ops.Conv2d(in_channels, in_channels, 7, padding=3, groups=in_channels)
            self.temb_proj = ops.Linear(ctx.emb_channels, in_channels)
            self.norm_weight = ops.Parameter(np.ones(in_channels, np.float32))
            self.norm_bias = ops.Parameter(np.zeros(in_channels, np.float32))
            self.pwconv1 = ops.Conv2d(in_channels, hidden, 1, groups=pw_groups)
            self.pwconv2 = ops.Conv2d(hidden, out_channels, 1, groups=pw_groups)
            self.gamma = ops.Parameter(np.full(out_channels, 1e-6, np.float32))
            if in_channels != out_channels:
                self.shortcut = ops.Conv2d(in_channels, out_channels, 1)

        def _layer_norm(self, h):
            mean = reduce(h, "b c h w -> b 1 h w", "mean")
            centred = h - mean
            var = reduce(centred * centred, "b c h w -> b 1 h w", "mean")
            scale, shift = (rearrange(p, "c -> 1 c 1 1") for p in (self.norm_weight, self.norm_bias))
            return centred * (var + self.eps) ** -0.5 * scale + shift

        def forward(self, x, emb):
            h = self.dwconv(x) + rearrange(self.temb_proj(ops.silu(emb)), "b c -> b c 1 1")
            h = self.pwconv2(ops.relu(self.pwconv1(self._layer_norm(h))))
            skip = self.shortcut(x) if hasattr(self, "shortcut") else x
            return skip + h * rearrange(self.gamma, "c -> 1 c 1 1")

    return ConvNeXtBlock


@unetlab.portable
def FailsInForward(ops):
    """Builds; raises on its first call."""

    class FailsInForward(ops.Module):
        takes_time_embedding = False

        def __init__(self, ctx, in_channels, out_channels):
            super().__init__()
            self.proj = ops.Conv2d(in_channels, out_channels, 1)

        def forward(self, x):
            raise RuntimeError("fails_in_forward cannot run")

    return FailsInForward


@unetlab.hookimpl
def unetlab_blocks():
    return [
        unetlab.BlockDef("attention", "linear", LinearAttention, (HEADS,),
                         "linear attention, zero-initialised output projection", variations=({"heads": 2},)),
        unetlab.BlockDef("attention", "linear_jittor_x3", LinearAttentionJittorX3, (HEADS,),
                         "linear attention with a Jittor path three times too large"),
        unetlab.BlockDef("resblock", "convnext", ConvNeXtBlock, (EXPANSION, PW_GROUPS),
                         "ConvNeXt-style: depthwise 7x7, LayerNorm, pointwise MLP, layer scale",
                         variations=({"pw_groups": 2}, {"expansion": 2})),
        unetlab.BlockDef("attention", "fails_in_forward", FailsInForward, (), "raises when called"),
    ]
