"""Normalisation layers for the ``norm`` slot: GroupNorm (the default) and channel RMSNorm."""
from __future__ import annotations

from ..blocks.norm import ChannelRMSNorm, GroupNorm
from ..hookspecs import hookimpl
from ..registry import BlockDef


@hookimpl
def unetlab_blocks():
    return [
        BlockDef("norm", "groupnorm", GroupNorm, (), "GroupNorm (model.norm_groups, model.norm_eps), scale and shift"),
        BlockDef("norm", "rmsnorm", ChannelRMSNorm, (),
                 "RMS over the channels of each pixel (model.norm_eps), per-channel scale, no shift"),
    ]
