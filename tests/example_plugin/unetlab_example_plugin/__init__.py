"""An example unetlab plugin: one attention-slot block, in PyTorch and in Jittor.

The block is written once against ``ops`` (unetlab's shared layer vocabulary) and
:func:`unetlab.portable` turns that one factory into a class per framework
(``ExampleLinear.torch``, ``ExampleLinear.jittor``), importable by name so models pickle.
"""
from __future__ import annotations

import unetlab

GAIN = unetlab.Option("gain", float, 1.0, "scale of the residual branch (0 makes the block the identity)")


@unetlab.portable
def ExampleLinear(ops):
    """The ``example_linear`` block class for ``ops``'s framework."""

    class ExampleLinear(ops.Module):
        """``x + gain * proj(silu(norm(x)))``: a normalised 1x1-conv residual branch."""

        takes_time_embedding = False

        def __init__(self, ctx, in_channels, out_channels, *, gain=1.0):
            super().__init__()
            if in_channels != out_channels:
                raise unetlab.UnetlabError(
                    f"example_linear keeps its width: in_channels {in_channels} != out_channels {out_channels}")
            self.gain = gain
            self.norm = ctx.norm(in_channels)
            self.proj = ops.Conv2d(in_channels, in_channels, 1)

        def forward(self, x):
            return x + self.proj(ops.silu(self.norm(x))) * self.gain

    return ExampleLinear


@unetlab.hookimpl
def unetlab_blocks():
    return [
        unetlab.BlockDef("attention", "example_linear", ExampleLinear, (GAIN,),
                         "example plugin: GroupNorm-SiLU-1x1 conv residual branch scaled by gain"),
    ]
