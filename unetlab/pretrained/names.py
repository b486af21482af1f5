"""diffusers ``UNet2DModel`` parameter names -> unetlab's (the public DDPM layout)."""
from __future__ import annotations

import re

import numpy as np

from ..errors import UnetlabError

RESNET_PARTS = {"norm1": "norm1", "conv1": "conv1", "time_emb_proj": "temb_proj", "norm2": "norm2",
                "conv2": "conv2", "conv_shortcut": "nin_shortcut"}
#: current diffusers names and the names of checkpoints saved before its attention rewrite
ATTENTION_PARTS = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out",
                   "query": "q", "key": "k", "value": "v", "proj_attn": "proj_out"}
RESAMPLERS = {"downsamplers": "downsample", "upsamplers": "upsample"}
TOP_LEVEL = {"conv_in": "conv_in", "conv_norm_out": "norm_out", "conv_out": "conv_out",
             "time_embedding.linear_1": "temb.dense.0", "time_embedding.linear_2": "temb.dense.1"}

_BLOCK = re.compile(r"(down_blocks|up_blocks)\.(\d+)\.(resnets|attentions|downsamplers|upsamplers)\.(\d+)\.(.+)")
_MID = re.compile(r"mid_block\.(resnets|attentions)\.(\d+)\.(.+)")


def _part(rest: str, parts: dict) -> tuple[str, str] | None:
    stem, _, leaf = rest.rpartition(".")
    return (parts[stem], leaf) if stem in parts else None


def unetlab_name(key: str, num_levels: int) -> tuple[str, bool] | None:
    """(unetlab name, is an attention projection weight) of a diffusers key; None if unknown."""
    stem, _, leaf = key.rpartition(".")
    if stem in TOP_LEVEL:
        return f"{TOP_LEVEL[stem]}.{leaf}", False
    m = _BLOCK.fullmatch(key)
    if m:
        path, index, kind, i, rest = m.groups()
        level = int(index) if path == "down_blocks" else num_levels - 1 - int(index)
        side = "down" if path == "down_blocks" else "up"
        if kind in RESAMPLERS:
            if i != "0" or not rest.startswith("conv."):
                return None
            return f"{side}.{level}.{RESAMPLERS[kind]}.{rest}", False
        parts = RESNET_PARTS if kind == "resnets" else ATTENTION_PARTS
        found = _part(rest, parts)
        if found is None:
            return None
        name, leaf = found
        where = "block" if kind == "resnets" else "attn"
        return f"{side}.{level}.{where}.{i}.{name}.{leaf}", kind == "attentions" and name != "norm"
    m = _MID.fullmatch(key)
    if m:
        kind, i, rest = m.groups()
        found = _part(rest, RESNET_PARTS if kind == "resnets" else ATTENTION_PARTS)
        if found is None or (kind == "attentions" and i != "0") or i not in ("0", "1"):
            return None
        name, leaf = found
        where = f"block_{int(i) + 1}" if kind == "resnets" else "attn_1"
        return f"mid.{where}.{name}.{leaf}", kind == "attentions" and name != "norm"
    return None


def convert_state_dict(arrays: dict, num_levels: int, where: str = "weights") -> dict:
    """unetlab-named float32 arrays from diffusers-named ones.

    Attention projections are linear layers in diffusers and 1x1 convolutions in unetlab: their
    (C_out, C_in) weights become (C_out, C_in, 1, 1); the arithmetic is the same.
    """
    out = {}
    for key, value in arrays.items():
        mapped = unetlab_name(key, num_levels)
        if mapped is None:
            raise UnetlabError(f"{where}: parameter {key!r} has no place in the unetlab model")
        name, projection = mapped
        value = np.asarray(value, dtype=np.float32)
        if projection and name.endswith(".weight") and value.ndim == 2:
            value = value[:, :, None, None]
        if name in out:
            raise UnetlabError(f"{where}: two parameters map to {name!r} (old and new attention names?)")
        out[name] = value
    return out
