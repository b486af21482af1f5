"""Blocks and preset of the DDPM CIFAR-10 U-Net (Ho et al. 2020)."""
from __future__ import annotations

from ..blocks.attention import COMMON_OPTIONS, Attention
from ..blocks.residual import RESBLOCK_OPTIONS, ResBlock
from ..blocks.resample import AsymmetricConvDown, NearestConvUp
from ..blocks.time_embedding import SINUSOIDAL_OPTIONS, SinusoidalEmbedding
from ..hookspecs import hookimpl
from ..registry import BlockDef

DDPM_CIFAR10 = {
    "image_size": 32, "in_channels": 3, "out_channels": 3,
    "base_channels": 128, "channel_mult": [1, 2, 2, 2], "num_res_blocks": 2,
    "attn_resolutions": [16], "mid_attention": True, "dropout": 0.1,
    "norm_groups": 32, "norm_eps": 1e-6, "emb_mult": 4,
    "blocks": {"resblock": "ddpm", "attention": "ddpm", "time_embedding": "ddpm",
               "downsample": "ddpm", "upsample": "ddpm"},
}


@hookimpl
def unetlab_blocks():
    return [
        BlockDef("resblock", "ddpm", ResBlock, RESBLOCK_OPTIONS,
                 "GroupNorm-SiLU-conv x2; time embedding added after conv1"),
        BlockDef("attention", "ddpm", Attention, COMMON_OPTIONS,
                 "single-head self-attention, 1x1-conv q/k/v/proj_out"),
        BlockDef("time_embedding", "ddpm", SinusoidalEmbedding, SINUSOIDAL_OPTIONS,
                 "sinusoidal [sin, cos], log(1e4)/(half-1), then MLP"),
        BlockDef("downsample", "ddpm", AsymmetricConvDown, (),
                 "3x3 stride-2 conv after (0,1,0,1) zero padding"),
        BlockDef("upsample", "ddpm", NearestConvUp, (),
                 "nearest x2 then 3x3 conv"),
    ]


@hookimpl
def unetlab_presets():
    return {"ddpm": DDPM_CIFAR10}
