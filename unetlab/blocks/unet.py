"""The U-Net assembly: levels, skips and slots wired from a :class:`ModelSpec`.

Written once against a framework's ``ops``; parameter names follow the public DDPM layout
(``temb.dense.0``, ``down.{L}.block.{B}``, ``mid.attn_1``, ``up.{L}.upsample``, ...), so the
``ddpm`` preset loads converted DDPM checkpoints by name and weights move between frameworks.
"""
from __future__ import annotations

from ..portable import portable
from ..spec.model import ModelSpec
from .building import block_label, build_block
from .contract import BuildContext, call_block


@portable
def UNet(ops):
    """The U-Net module class for the framework whose vocabulary is ``ops``."""

    class UNet(ops.Module):
        """A diffusion U-Net: ``model(x, t)`` maps (N, C, H, W) and (N,) timesteps to (N, C_out, H, W)."""

        def __init__(self, spec: ModelSpec, framework: str):
            super().__init__()
            self.unetlab_config = spec.to_config()
            self.framework = framework
            self.num_levels = spec.num_levels
            self.num_res_blocks = spec.num_res_blocks
            norm = spec.choice("norm")
            ctx = BuildContext(ops, spec.emb_channels, spec.dropout, spec.norm_groups, spec.norm_eps,
                               norm_block=norm.block().implementation(framework), norm_options=norm.options)

            def make(slot, in_ch, out_ch, level=None):
                choice = spec.choice(slot, level)
                cls = choice.block().implementation(framework)
                return build_block(cls, ctx, in_ch, out_ch, choice.options, block_label(slot, choice.name, level))

            ch = spec.base_channels
            self.temb = make("time_embedding", ch, spec.emb_channels)
            self.conv_in = ops.Conv2d(spec.in_channels, ch, 3, stride=1, padding=1)

            skips = [ch]
            block_in = ch
            res = spec.image_size
            self.down = ops.ModuleList()
            for level, mult in enumerate(spec.channel_mult):
                stage = ops.Module()
                stage.block = ops.ModuleList()
                stage.attn = ops.ModuleList()
                block_out = ch * mult
                for _ in range(spec.num_res_blocks):
                    stage.block.append(make("resblock", block_in, block_out, level))
                    block_in = block_out
                    if res in spec.attn_resolutions:
                        stage.attn.append(make("attention", block_in, block_in, level))
                    skips.append(block_in)
                if level != spec.num_levels - 1:
                    stage.downsample = make("downsample", block_in, block_in, level)
                    skips.append(block_in)
                    res //= 2
                self.down.append(stage)

            last = spec.num_levels - 1
            self.mid = ops.Module()
            self.mid.block_1 = make("resblock", block_in, block_in, last)
            if spec.mid_attention:
                self.mid.attn_1 = make("attention", block_in, block_in, last)
            self.mid.block_2 = make("resblock", block_in, block_in, last)

            ups = []
            for level in reversed(range(spec.num_levels)):
                stage = ops.Module()
                stage.block = ops.ModuleList()
                stage.attn = ops.ModuleList()
                block_out = ch * spec.channel_mult[level]
                for _ in range(spec.num_res_blocks + 1):
                    stage.block.append(make("resblock", block_in + skips.pop(), block_out, level))
                    block_in = block_out
                    if res in spec.attn_resolutions:
                        stage.attn.append(make("attention", block_in, block_in, level))
                if level != 0:
                    stage.upsample = make("upsample", block_in, block_in, level)
                    res *= 2
                ups.insert(0, stage)
            self.up = ops.ModuleList(ups)

            self.norm_out = ctx.norm(block_in)
            self.conv_out = ops.Conv2d(block_in, spec.out_channels, 3, stride=1, padding=1)

        def forward(self, x, t):
            emb = self.temb(t)
            hs = [self.conv_in(x)]
            for level in range(self.num_levels):
                stage = self.down[level]
                for i, block in enumerate(stage.block):
                    h = call_block(block, hs[-1], emb)
                    if len(stage.attn):
                        h = call_block(stage.attn[i], h, emb)
                    hs.append(h)
                if level != self.num_levels - 1:
                    hs.append(call_block(stage.downsample, hs[-1], emb))

            h = call_block(self.mid.block_1, hs[-1], emb)
            if hasattr(self.mid, "attn_1"):
                h = call_block(self.mid.attn_1, h, emb)
            h = call_block(self.mid.block_2, h, emb)

            for level in reversed(range(self.num_levels)):
                stage = self.up[level]
                for i, block in enumerate(stage.block):
                    h = call_block(block, ops.cat([h, hs.pop()], dim=1), emb)
                    if len(stage.attn):
                        h = call_block(stage.attn[i], h, emb)
                if level != 0:
                    h = call_block(stage.upsample, h, emb)

            return self.conv_out(ops.silu(call_block(self.norm_out, h, emb)))

    return UNet
