"""What every block receives and returns, whatever its slot or framework.

Every block class is constructed as ``Block(ctx, in_channels, out_channels, **options)``
and declares ``takes_time_embedding`` (improved-diffusion's ``TimestepBlock`` idea):

================  ==============================  ====================================
slot              in_channels -> out_channels     called as
================  ==============================  ====================================
resblock          block input -> block output     ``block(x, emb)``
attention         channels -> channels            ``block(x)``
downsample        channels -> channels, H/2       ``block(x)`` or ``block(x, emb)``
upsample          channels -> channels, 2H        ``block(x)`` or ``block(x, emb)``
time_embedding    base width -> embedding width   ``block(t)``, ``t`` integer (N,)
================  ==============================  ====================================

Blocks must not read options other than the ones they declare: unetlab validates the
options against the block's declaration before construction.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BuildContext:
    """Model-wide settings a block may use while it is built."""

    ops: Any                 # unetlab.frameworks.torch_ops or jittor_ops
    emb_channels: int        # width of the time embedding fed to time-taking blocks
    dropout: float           # the model's dropout rate
    norm_groups: int         # GroupNorm groups
    norm_eps: float          # GroupNorm epsilon
    slot: str = ""           # the slot being filled (for error messages)

    def norm(self, channels: int):
        """The model's normalisation layer for ``channels`` channels."""
        return self.ops.GroupNorm(self.norm_groups, channels, self.norm_eps)


def call_block(block, x, emb):
    """Call ``block`` with the time embedding only if it declares that it takes one."""
    if getattr(block, "takes_time_embedding", False):
        return block(x, emb)
    return block(x)
