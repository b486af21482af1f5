"""Self-attention over the pixels of a feature map, single- or multi-head, with 1x1-conv
projections named as in DDPM (``norm``, ``q``, ``k``, ``v``, ``proj_out``)."""
from __future__ import annotations

from einops import rearrange

from ..errors import UnetlabError
from ..options import Option
from ..portable import portable
from .contract import call_block

COMMON_OPTIONS = (
    Option("fp32_softmax", bool, False, "softmax in float32 under mixed precision (PyTorch: the whole "
           "attention in float32; Jittor: the softmax, its products stay float16)"),
    Option("fused", bool, True, "use the framework's fused attention kernel where it has one"),
)
MULTIHEAD_OPTIONS = (
    Option("heads", int, None, "number of heads (exclusive with head_channels)", nullable=True, low=1),
    Option("head_channels", int, None, "channels per head (exclusive with heads)", nullable=True, low=1),
) + COMMON_OPTIONS


def check_head_options(options: dict, where: str) -> None:
    """``heads`` and ``head_channels`` are two ways to say one thing: at most one may be given."""
    if options.get("heads") is not None and options.get("head_channels") is not None:
        raise UnetlabError(f"{where}: give heads or head_channels, not both")
    for key in ("heads", "head_channels"):
        if options.get(key) is not None and options[key] <= 0:
            raise UnetlabError(f"{where}.{key}: must be positive, got {options[key]}")


def num_heads(channels: int, heads: int | None, head_channels: int | None) -> int:
    """The head count from ``heads`` or ``head_channels`` (see :func:`check_head_options`)."""
    check_head_options({"heads": heads, "head_channels": head_channels}, "attention")
    if head_channels is not None:
        if channels % head_channels:
            raise UnetlabError(f"head_channels={head_channels} does not divide {channels} channels")
        return channels // head_channels
    heads = 1 if heads is None else heads
    if channels % heads:
        raise UnetlabError(f"heads={heads} does not divide {channels} channels")
    return heads


@portable
def Attention(ops):
    """Self-attention over the pixels, single- or multi-head, added to its input."""

    class Attention(ops.Module):
        takes_time_embedding = False

        def __init__(self, ctx, in_channels, out_channels, *, heads=None, head_channels=None,
                     fp32_softmax=False, fused=True):
            super().__init__()
            self.heads = num_heads(in_channels, heads, head_channels)
            self.fp32_softmax = fp32_softmax
            self.fused = fused
            self.norm = ctx.norm(in_channels)
            self.q = ops.Conv2d(in_channels, in_channels, 1)
            self.k = ops.Conv2d(in_channels, in_channels, 1)
            self.v = ops.Conv2d(in_channels, in_channels, 1)
            self.proj_out = ops.Conv2d(in_channels, in_channels, 1)

        def _split(self, x):
            return rearrange(x, "b (heads c) h w -> b heads (h w) c", heads=self.heads)

        def forward(self, x):
            h = call_block(self.norm, x, None)
            q, k, v = self._split(self.q(h)), self._split(self.k(h)), self._split(self.v(h))
            out = ops.attention(q, k, v, fp32_softmax=self.fp32_softmax, fused=self.fused)
            out = rearrange(out, "b heads (h w) c -> b (heads c) h w", h=x.shape[2])
            return x + self.proj_out(out)

    return Attention
