"""Residual blocks: DDPM's (time embedding added after conv1) and ADM's (scale-shift), with
optional resampling inside the block (BigGAN/ADM up and down blocks)."""
from __future__ import annotations

from einops import rearrange

from ..options import Option
from ..portable import portable
from .contract import call_block

RESBLOCK_OPTIONS = (
    Option("conditioning", str, "add", "how the time embedding enters: add after conv1 (DDPM) "
           "or scale_shift, norm2(h)*(1+s)+b (ADM/FiLM)", choices=("add", "scale_shift")),
    Option("shortcut", str, "conv1x1", "skip projection when widths differ", choices=("conv1x1", "conv3x3")),
    Option("zero_init", bool, False, "start conv2 at zero, so the block starts as its shortcut"),
    Option("output_scale", float, 1.0, "multiply the block's output, e.g. 0.7071 for 1/sqrt(2)"),
)


@portable
def ResBlock(ops):
    """GroupNorm-SiLU-conv twice with the time embedding in between, plus a shortcut."""

    class ResBlock(ops.Module):
        takes_time_embedding = True
        resample = "none"  # or down / up: resample inside the block (subclasses below)

        def __init__(self, ctx, in_channels, out_channels, *, conditioning="add", shortcut="conv1x1",
                     zero_init=False, output_scale=1.0):
            super().__init__()
            self.scale_shift = conditioning == "scale_shift"
            self.output_scale = output_scale
            self.norm1 = ctx.norm(in_channels)
            self.conv1 = ops.Conv2d(in_channels, out_channels, 3, stride=1, padding=1)
            emb_out = 2 * out_channels if self.scale_shift else out_channels
            self.temb_proj = ops.Linear(ctx.emb_channels, emb_out)
            self.norm2 = ctx.norm(out_channels)
            self.dropout = ops.Dropout(ctx.dropout)
            self.conv2 = ops.Conv2d(out_channels, out_channels, 3, stride=1, padding=1)
            if zero_init:
                ops.zero_module(self.conv2)
            self.has_shortcut = in_channels != out_channels
            if self.has_shortcut:
                if shortcut == "conv3x3":
                    self.conv_shortcut = ops.Conv2d(in_channels, out_channels, 3, stride=1, padding=1)
                else:
                    self.nin_shortcut = ops.Conv2d(in_channels, out_channels, 1, stride=1, padding=0)

        def _resample(self, x):
            if self.resample == "down":
                return ops.avg_pool2x(x)
            if self.resample == "up":
                return ops.upsample_nearest2x(x)
            return x

        def forward(self, x, emb):
            h = ops.silu(call_block(self.norm1, x, emb))
            if self.resample != "none":
                h, x = self._resample(h), self._resample(x)
            h = self.conv1(h)
            e = self.temb_proj(ops.silu(emb))
            e = rearrange(e, "b c -> b c 1 1")
            if self.scale_shift:
                scale, shift = ops.chunk(e, 2, dim=1)
                h = call_block(self.norm2, h, emb) * (scale + 1) + shift
            else:
                h = call_block(self.norm2, h + e, emb)
            h = self.conv2(self.dropout(ops.silu(h)))
            if self.has_shortcut:
                x = self.conv_shortcut(x) if hasattr(self, "conv_shortcut") else self.nin_shortcut(x)
            out = x + h
            return out * self.output_scale if self.output_scale != 1.0 else out

    return ResBlock


@portable
def ResBlockDown(ops):
    """The residual block, average-pooling inside (for the downsample slot)."""

    class ResBlockDown(ResBlock.of(ops)):
        resample = "down"

    return ResBlockDown


@portable
def ResBlockUp(ops):
    """The residual block, upsampling (nearest) inside (for the upsample slot)."""

    class ResBlockUp(ResBlock.of(ops)):
        resample = "up"

    return ResBlockUp
