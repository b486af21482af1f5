"""An independent, plain-PyTorch DDPM CIFAR-10 U-Net, written from the paper's description.

It shares no code with unetlab: the tests load its state dict into unetlab's ``ddpm`` preset
through ``load_ddpm_state_dict`` and compare outputs, and the benchmarks time it beside
unetlab as the baseline.  Parameter names follow the public DDPM-conversion layout.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn


def gn(c):
    return nn.GroupNorm(32, c, eps=1e-6)


class Res(nn.Module):
    def __init__(self, cin, cout, temb=512, dropout=0.1):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.norm1, self.conv1 = gn(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.temb_proj = nn.Linear(temb, cout)
        self.norm2, self.conv2 = gn(cout), nn.Conv2d(cout, cout, 3, padding=1)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x))) + self.temb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return (self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x) + h


class Attn(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm = gn(c)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(c, c, 1) for _ in range(4))

    def forward(self, x):
        b, c, hh, ww = x.shape
        h = self.norm(x)
        q = self.q(h).flatten(2).transpose(1, 2)
        k = self.k(h).flatten(2)
        w = torch.softmax(q @ k / math.sqrt(c), dim=-1)
        out = (self.v(h).flatten(2) @ w.transpose(1, 2)).reshape(b, c, hh, ww)
        return x + self.proj_out(out)


class Reference(nn.Module):
    """The DDPM CIFAR-10 network; ``dropout`` 0.1 as in the paper (0 for a net without it)."""

    def __init__(self, ch=128, mult=(1, 2, 2, 2), dropout=0.1):
        super().__init__()
        self.ch = ch
        self.temb = nn.Module()
        self.temb.dense = nn.ModuleList([nn.Linear(ch, 4 * ch), nn.Linear(4 * ch, 4 * ch)])
        self.conv_in = nn.Conv2d(3, ch, 3, padding=1)
        widths, res, cur = [ch], 32, ch
        self.down = nn.ModuleList()
        for i, m in enumerate(mult):
            d = nn.Module()
            d.block, d.attn = nn.ModuleList(), nn.ModuleList()
            for _ in range(2):
                d.block.append(Res(cur, ch * m, dropout=dropout))
                cur = ch * m
                if res == 16:
                    d.attn.append(Attn(cur))
                widths.append(cur)
            if i < len(mult) - 1:
                d.downsample = nn.Module()
                d.downsample.conv = nn.Conv2d(cur, cur, 3, stride=2)
                widths.append(cur)
                res //= 2
            self.down.append(d)
        self.mid = nn.Module()
        self.mid.block_1, self.mid.attn_1, self.mid.block_2 = Res(cur, cur, dropout=dropout), Attn(cur), Res(cur, cur, dropout=dropout)
        ups = {}
        for i in reversed(range(len(mult))):
            u = nn.Module()
            u.block, u.attn = nn.ModuleList(), nn.ModuleList()
            for _ in range(3):
                u.block.append(Res(cur + widths.pop(), ch * mult[i], dropout=dropout))
                cur = ch * mult[i]
                if res == 16:
                    u.attn.append(Attn(cur))
            if i > 0:
                u.upsample = nn.Module()
                u.upsample.conv = nn.Conv2d(cur, cur, 3, padding=1)
                res *= 2
            ups[i] = u
        self.up = nn.ModuleList([ups[i] for i in range(len(mult))])
        self.norm_out, self.conv_out = gn(cur), nn.Conv2d(cur, 3, 3, padding=1)

    def forward(self, x, t):
        half = self.ch // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, device=t.device) / (half - 1))
        args = t.float()[:, None] * freqs[None]
        temb = self.temb.dense[1](F.silu(self.temb.dense[0](torch.cat([args.sin(), args.cos()], 1))))
        hs = [self.conv_in(x)]
        for i, d in enumerate(self.down):
            for j, blk in enumerate(d.block):
                h = blk(hs[-1], temb)
                hs.append(d.attn[j](h) if len(d.attn) else h)
            if hasattr(d, "downsample"):
                hs.append(d.downsample.conv(F.pad(hs[-1], (0, 1, 0, 1))))
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(hs[-1], temb)), temb)
        for i in reversed(range(len(self.up))):
            u = self.up[i]
            for j, blk in enumerate(u.block):
                h = blk(torch.cat([h, hs.pop()], 1), temb)
                h = u.attn[j](h) if len(u.attn) else h
            if hasattr(u, "upsample"):
                h = u.upsample.conv(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))
