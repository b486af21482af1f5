"""The ``ddpm`` preset is the DDPM CIFAR-10 network: same parameter count, and it loads an
independently written implementation's state dict and computes the same function."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unetlab import UnetlabError, build_model, count_parameters, load_ddpm_state_dict

from tiny import rel_err


# --- an independent DDPM CIFAR-10 U-Net, written from the paper's description -------------
def gn(c):
    return nn.GroupNorm(32, c, eps=1e-6)


class Res(nn.Module):
    def __init__(self, cin, cout, temb=512):
        super().__init__()
        self.norm1, self.conv1 = gn(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.temb_proj = nn.Linear(temb, cout)
        self.norm2, self.conv2 = gn(cout), nn.Conv2d(cout, cout, 3, padding=1)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x))) + self.temb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
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
    def __init__(self, ch=128, mult=(1, 2, 2, 2)):
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
                d.block.append(Res(cur, ch * m))
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
        self.mid.block_1, self.mid.attn_1, self.mid.block_2 = Res(cur, cur), Attn(cur), Res(cur, cur)
        ups = {}
        for i in reversed(range(len(mult))):
            u = nn.Module()
            u.block, u.attn = nn.ModuleList(), nn.ModuleList()
            for _ in range(3):
                u.block.append(Res(cur + widths.pop(), ch * mult[i]))
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
        freqs = torch.exp(-math.log(10000) * torch.arange(half) / (half - 1))
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


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(0)
    ref = Reference().eval()
    with torch.no_grad():  # default init leaves norms at 1/0: perturb them so they matter
        for name, p in ref.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return ref


def test_parameter_count_matches_ddpm(reference):
    assert sum(p.numel() for p in reference.parameters()) == 35_746_307
    assert count_parameters(build_model("ddpm", "torch")) == 35_746_307
    assert count_parameters(build_model("ddpm", "jittor")) == 35_746_307


@pytest.mark.parametrize("framework", ["torch", "jittor"])
def test_loads_reference_weights_and_matches(reference, framework):
    model = build_model("ddpm", framework)
    model.eval()
    load_ddpm_state_dict(model, {"module." + k: v for k, v in reference.state_dict().items()})
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    t = np.array([17, 901])
    with torch.no_grad():
        expected = reference(torch.from_numpy(x), torch.from_numpy(t)).numpy()
    if framework == "torch":
        with torch.no_grad():
            got = model(torch.from_numpy(x), torch.from_numpy(t)).numpy()
    else:
        import jittor as jt

        with jt.no_grad():
            got = model(jt.array(x), jt.array(t)).numpy()
    assert rel_err(expected, got) <= 1e-5


def test_mismatched_state_dict_is_one_clear_error(reference):
    model = build_model({"preset": "ddpm", "base_channels": 64}, "torch")
    with pytest.raises(UnetlabError, match=r"DDPM state dict entries do not fit the model: .*other shapes \(e\.g\. "):
        load_ddpm_state_dict(model, reference.state_dict())
    sd = dict(reference.state_dict())
    sd.pop("conv_out.bias")
    with pytest.raises(UnetlabError, match=r"1 missing \(e\.g\. conv_out\.bias\)"):
        load_ddpm_state_dict(build_model("ddpm", "torch"), sd)
