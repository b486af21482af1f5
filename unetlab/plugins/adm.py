"""Blocks and preset in the style of ADM / improved-diffusion (Dhariwal & Nichol 2021)."""
from __future__ import annotations

from dataclasses import replace

from ..blocks.attention import MULTIHEAD_OPTIONS, Attention, check_head_options
from ..blocks.residual import RESBLOCK_OPTIONS, ResBlock, ResBlockDown, ResBlockUp
from ..blocks.resample import AvgPoolDown, ConvDown, TransposedConvUp
from ..blocks.time_embedding import SINUSOIDAL_OPTIONS, SinusoidalEmbedding
from ..hookspecs import hookimpl
from ..registry import BlockDef


def _defaults(options, **defaults):
    return tuple(replace(o, default=defaults[o.name]) if o.name in defaults else o for o in options)


ADM_RES = _defaults(RESBLOCK_OPTIONS, conditioning="scale_shift", zero_init=True)
# a resampling residual block keeps its width, so it has no shortcut projection to choose
ADM_RESAMPLE = tuple(o for o in ADM_RES if o.name != "shortcut")

ADM_CIFAR10 = {
    "image_size": 32, "in_channels": 3, "out_channels": 3,
    "base_channels": 128, "channel_mult": [1, 2, 2, 2], "num_res_blocks": 2,
    "attn_resolutions": [16, 8], "mid_attention": True, "dropout": 0.1,
    "norm_groups": 32, "norm_eps": 1e-5, "emb_mult": 4,
    "blocks": {"resblock": "adm", "attention": {"name": "multihead", "head_channels": 64},
               "time_embedding": "adm", "downsample": "resblock", "upsample": "resblock"},
}


@hookimpl
def unetlab_blocks():
    return [
        BlockDef("resblock", "adm", ResBlock, ADM_RES,
                 "scale-shift (FiLM) conditioning, zero-initialised conv2"),
        BlockDef("attention", "multihead", Attention, MULTIHEAD_OPTIONS,
                 "multi-head self-attention: by heads or by head_channels", check=check_head_options,
                 variations=({"heads": 2}, {"head_channels": 4})),
        BlockDef("time_embedding", "adm", SinusoidalEmbedding,
                 _defaults(SINUSOIDAL_OPTIONS, order="cos_sin", freq_shift=0.0),
                 "sinusoidal [cos, sin], log(1e4)/half, then MLP"),
        BlockDef("downsample", "conv", ConvDown, (),
                 "3x3 stride-2 conv, padding 1"),
        BlockDef("downsample", "avgpool", AvgPoolDown, (), "2x2 average pooling"),
        BlockDef("downsample", "resblock", ResBlockDown, ADM_RESAMPLE,
                 "residual block that average-pools inside (BigGAN/ADM)"),
        BlockDef("upsample", "convtranspose", TransposedConvUp, (),
                 "4x4 stride-2 transposed conv"),
        BlockDef("upsample", "resblock", ResBlockUp, ADM_RESAMPLE,
                 "residual block that upsamples (nearest) inside (BigGAN/ADM)"),
    ]


@hookimpl
def unetlab_presets():
    return {"adm": ADM_CIFAR10}


