"""What every block receives, may use and returns, whatever its slot or framework.

Every block class is constructed as ``Block(ctx, in_channels, out_channels, **options)``
(:class:`BuildContext`, then the options it declares, already validated) and declares
``takes_time_embedding`` (improved-diffusion's ``TimestepBlock`` idea).  The U-Net calls every
block through :func:`call_block`, which passes the time embedding exactly when the block
declares it takes one, in every slot:

================  ==============================  ====================================
slot              in_channels -> out_channels     called as
================  ==============================  ====================================
resblock          block input -> block output     ``block(x, emb)`` (or ``block(x)``)
attention         channels -> channels            ``block(x)`` (or ``block(x, emb)``)
downsample        channels -> channels, H/2       ``block(x)`` or ``block(x, emb)``
upsample          channels -> channels, 2H        ``block(x)`` or ``block(x, emb)``
norm              channels -> channels            ``block(x)`` (or ``block(x, emb)``)
time_embedding    base width -> embedding width   ``block(t)``, ``t`` integer (N,)
================  ==============================  ====================================

``x`` is a float NCHW tensor, ``emb`` a float (N, ctx.emb_channels) tensor.  A block written once
for both frameworks uses only ``ops`` (:class:`unetlab.frameworks.contract.Ops`: layers and
functions), ``einops.rearrange``/``reduce`` (both frameworks have an einops backend), and the
tensor methods the two frameworks share: ``shape``, ``reshape``, ``permute``, arithmetic with
tensors and Python numbers, ``**``, ``@``, ``float()``.  Its parameters are created by ``ops``
layers or ``ops.Parameter``, and named alike in both frameworks (weights move between them by
name).  Blocks must not read options other than the ones they declare: unetlab validates the
options against the block's declaration before construction.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from .norm import GroupNorm


@runtime_checkable
class Block(Protocol):
    """A block instance: a framework module, called as in the table above."""

    #: True: the block is called as ``block(x, emb)``; False: as ``block(x)``
    takes_time_embedding: ClassVar[bool]

    def __call__(self, x, emb=None):
        """The block's output for the NCHW input ``x`` (and time embedding ``emb``)."""


class BlockClass(Protocol):
    """What the registry builds: ``BlockClass(ctx, in_channels, out_channels, **options)``."""

    takes_time_embedding: ClassVar[bool]

    def __call__(self, ctx: "BuildContext", in_channels: int, out_channels: int, **options) -> Block:
        """A new block for ``in_channels`` -> ``out_channels`` channels."""


@dataclass(frozen=True)
class BuildContext:
    """Model-wide settings a block may use while it is built."""

    ops: Any                 # unetlab.frameworks.torch_ops or jittor_ops
    emb_channels: int        # width of the time embedding fed to time-taking blocks
    dropout: float           # the model's dropout rate
    norm_groups: int         # GroupNorm groups
    norm_eps: float          # normalisation epsilon
    slot: str = ""           # the slot being filled (for error messages)
    norm_block: Any = None   # the norm slot's class (default: GroupNorm)
    norm_options: dict = field(default_factory=dict)

    def norm(self, channels: int):
        """The model's normalisation layer (the ``norm`` slot's block) for ``channels`` channels."""
        cls = self.norm_block
        if cls is None:
            cls = GroupNorm.of(self.ops)
        return cls(self, channels, channels, **self.norm_options)


def call_block(block, x, emb):
    """Call ``block`` with the time embedding only if it declares that it takes one."""
    if getattr(block, "takes_time_embedding", False):
        return block(x, emb)
    return block(x)
