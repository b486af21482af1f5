"""A diffusers ``UNet2DModel`` config.json -> the unetlab model spec that computes the same.

Every field either maps exactly onto the spec or is refused in one line naming it: a config
unetlab cannot represent never gives an approximate model.
"""
from __future__ import annotations

from typing import Any, Mapping

from ..errors import UnetlabError

#: UNet2DModel's constructor defaults: a field left out of config.json takes these values.
UNET2D_DEFAULTS: dict[str, Any] = {
    "sample_size": None, "in_channels": 3, "out_channels": 3, "center_input_sample": False,
    "time_embedding_type": "positional", "time_embedding_dim": None, "freq_shift": 0,
    "flip_sin_to_cos": True,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"],
    "mid_block_type": "UNetMidBlock2D",
    "up_block_types": ["AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [224, 448, 672, 896], "layers_per_block": 2, "mid_block_scale_factor": 1,
    "downsample_padding": 1, "downsample_type": "conv", "upsample_type": "conv", "dropout": 0.0,
    "act_fn": "silu", "attention_head_dim": 8, "norm_num_groups": 32, "attn_norm_num_groups": None,
    "norm_eps": 1e-5, "resnet_time_scale_shift": "default", "add_attention": True,
    "class_embed_type": None, "num_class_embeds": None, "num_train_timesteps": None,
}

DOWN_TYPES = {"DownBlock2D": False, "AttnDownBlock2D": True}
UP_TYPES = {"UpBlock2D": False, "AttnUpBlock2D": True}
DOWNSAMPLE_BY_PADDING = {0: "ddpm", 1: "conv"}  # 0: pad (0,1,0,1) then conv; 1: conv padding 1


class ConfigRefused(UnetlabError):
    """A UNet2DModel config field unetlab cannot represent exactly."""


def _refuse(where: str, field: str, why: str):
    raise ConfigRefused(f"{where}: {field}: {why}")


def _block_kind(name: Any, kinds: dict, field: str, where: str) -> bool:
    if isinstance(name, str) and name.startswith("UNetRes"):
        name = name[len("UNetRes"):]  # diffusers accepts this prefix as an alias
    if name not in kinds:
        _refuse(where, field, f"block type {name!r} has no unetlab equivalent (supported: {', '.join(kinds)})")
    return kinds[name]


def unet2d_config_to_spec(config: Mapping, where: str = "config.json") -> dict:
    """The unetlab model spec mapping equal to the UNet2DModel described by ``config``.

    Raises :class:`ConfigRefused` naming the first field that unetlab cannot represent exactly.
    """
    class_name = config.get("_class_name", "UNet2DModel")
    if class_name != "UNet2DModel":
        _refuse(where, "_class_name", f"{class_name!r} is not a UNet2DModel")
    unknown = sorted(k for k in config if not k.startswith("_") and k not in UNET2D_DEFAULTS)
    if unknown:
        _refuse(where, unknown[0], "unknown UNet2DModel field (its effect cannot be checked)")
    c = {**UNET2D_DEFAULTS, **{k: v for k, v in config.items() if not k.startswith("_")}}

    def must_be(field, allowed, why):
        if c[field] not in allowed:
            _refuse(where, field, f"{c[field]!r} is not supported ({why})")

    must_be("time_embedding_type", ("positional",), "unetlab maps the sinusoidal embedding only")
    must_be("center_input_sample", (False,), "the input would be rescaled by 2x - 1 first")
    must_be("act_fn", ("silu", "swish"), "unetlab's blocks use SiLU")
    must_be("resnet_time_scale_shift", ("default",), "only the embedding added after conv1 is mapped")
    must_be("class_embed_type", (None,), "class conditioning")
    must_be("num_class_embeds", (None,), "class conditioning")
    must_be("mid_block_type", ("UNetMidBlock2D",), "unetlab's middle is resblock-attention-resblock")
    must_be("mid_block_scale_factor", (1, 1.0), "the middle blocks would divide their outputs")
    if not isinstance(c["flip_sin_to_cos"], bool):
        _refuse(where, "flip_sin_to_cos", f"expected true or false, got {c['flip_sin_to_cos']!r}")

    widths = list(c["block_out_channels"])
    down, up = list(c["down_block_types"]), list(c["up_block_types"])
    levels = len(widths)
    if not widths or len(down) != levels or len(up) != levels:
        _refuse(where, "down_block_types", f"{len(down)} down and {len(up)} up block types for "
                f"{levels} block_out_channels")
    base = widths[0]
    if base <= 0 or any(w <= 0 or w % base for w in widths):
        _refuse(where, "block_out_channels", f"{widths}: every width must be a multiple of the first")
    down_attn = [_block_kind(t, DOWN_TYPES, "down_block_types", where) for t in down]
    up_attn = [_block_kind(t, UP_TYPES, "up_block_types", where) for t in up][::-1]  # by level
    if down_attn != up_attn:
        level = next(i for i in range(levels) if down_attn[i] != up_attn[i])
        _refuse(where, "up_block_types", f"attention at level {level} is not mirrored between the down and up "
                "paths (unetlab places attention by resolution, in both)")

    size = c["sample_size"]
    if isinstance(size, (list, tuple)):
        if len(size) != 2 or size[0] != size[1]:
            _refuse(where, "sample_size", f"{list(size)}: only square images are supported")
        size = size[0]
    if not isinstance(size, int) or size <= 0:
        _refuse(where, "sample_size", f"{size!r}: an image size is needed to place attention by resolution")

    groups = c["norm_num_groups"]
    if not isinstance(groups, int):
        _refuse(where, "norm_num_groups", f"{groups!r}: a fixed group count is needed")
    mid_attention = bool(c["add_attention"])
    if mid_attention and c["attn_norm_num_groups"] not in (None, groups):
        _refuse(where, "attn_norm_num_groups", f"{c['attn_norm_num_groups']} differs from norm_num_groups "
                f"{groups} (unetlab uses one group count)")

    padding = c["downsample_padding"]
    if levels > 1 and padding not in DOWNSAMPLE_BY_PADDING:
        _refuse(where, "downsample_padding", f"{padding!r} is not supported (0: DDPM's (0,1,0,1) pad, 1: pad 1)")
    if c["downsample_type"] != "conv" and any(down_attn[:-1]):
        _refuse(where, "downsample_type", f"{c['downsample_type']!r}: only the strided conv is mapped")
    if c["upsample_type"] != "conv" and any(up_attn[1:]):
        _refuse(where, "upsample_type", f"{c['upsample_type']!r}: only nearest + conv is mapped")

    emb_dim = c["time_embedding_dim"]
    if emb_dim is None:
        emb_mult = 4
    elif isinstance(emb_dim, int) and emb_dim > 0 and emb_dim % base == 0:
        emb_mult = emb_dim // base
    else:
        _refuse(where, "time_embedding_dim", f"{emb_dim!r} is not a multiple of block_out_channels[0] {base}")

    attention = _attention_block(c, widths, down_attn, mid_attention, where)
    return {
        "image_size": size, "in_channels": c["in_channels"], "out_channels": c["out_channels"],
        "base_channels": base, "channel_mult": [w // base for w in widths],
        "num_res_blocks": c["layers_per_block"],
        "attn_resolutions": [size // 2 ** i for i in range(levels) if down_attn[i]],
        "mid_attention": mid_attention, "dropout": float(c["dropout"]),
        "norm_groups": groups, "norm_eps": float(c["norm_eps"]), "emb_mult": emb_mult,
        "blocks": {
            "resblock": "ddpm",
            "attention": attention,
            "time_embedding": {"name": "ddpm", "order": "cos_sin" if c["flip_sin_to_cos"] else "sin_cos",
                               "freq_shift": float(c["freq_shift"]), "max_period": 10000.0},
            "downsample": DOWNSAMPLE_BY_PADDING.get(padding, "ddpm"),
            "upsample": "ddpm",
        },
    }


def _attention_block(c: dict, widths: list, down_attn: list, mid_attention: bool, where: str):
    """Single-head ``ddpm`` attention, or ``multihead`` when ``attention_head_dim`` splits heads.

    diffusers gives each attention ``channels // attention_head_dim`` heads of width
    ``attention_head_dim`` (one head of all channels when it is null).
    """
    head_dim = c["attention_head_dim"]
    sites = [w for w, a in zip(widths, down_attn) if a] + ([widths[-1]] if mid_attention else [])
    if head_dim is None or not sites:
        return "ddpm"
    if not isinstance(head_dim, int) or head_dim <= 0:
        _refuse(where, "attention_head_dim", f"{head_dim!r}: expected a positive channel count or null")
    for width in sites:
        if width % head_dim:
            _refuse(where, "attention_head_dim", f"{head_dim} does not divide the {width} channels of an "
                    "attention block (its heads would not cover the channels)")
    if all(width == head_dim for width in sites):
        return "ddpm"
    return {"name": "multihead", "head_channels": head_dim}
