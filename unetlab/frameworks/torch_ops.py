"""The layer vocabulary blocks are written against, in PyTorch (mirrors ``jittor_ops``)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

NAME = "torch"
Module = nn.Module
ModuleList = nn.ModuleList
Conv2d = nn.Conv2d
ConvTranspose2d = nn.ConvTranspose2d
Linear = nn.Linear
Dropout = nn.Dropout
Embedding = nn.Embedding
Identity = nn.Identity


GroupNorm = nn.GroupNorm


def Parameter(array: np.ndarray):
    """A trainable float32 parameter holding ``array`` (assign it to a module attribute)."""
    return nn.Parameter(torch.as_tensor(np.asarray(array, dtype=np.float32)))


def silu(x):
    return F.silu(x)


def relu(x):
    return F.relu(x)


def exp(x):
    return torch.exp(x)


def softmax(x, dim: int):
    return torch.softmax(x, dim=dim)


def cat(xs, dim: int):
    return torch.cat(xs, dim=dim)


def chunk(x, n: int, dim: int):
    return torch.chunk(x, n, dim=dim)


def pad(x, lrtb):
    """Zero-pad the last two dims by (left, right, top, bottom)."""
    return F.pad(x, lrtb)


def upsample_nearest2x(x):
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


def hflip(x):
    """Mirror the last (width) axis."""
    return torch.flip(x, dims=(-1,))


def avg_pool2x(x):
    return F.avg_pool2d(x, kernel_size=2, stride=2)


def sin(x):
    return torch.sin(x)


def cos(x):
    return torch.cos(x)


def as_float(x):
    return x.float()


def constant(array: np.ndarray, like):
    """A float32 tensor holding ``array``, on ``like``'s device."""
    return torch.as_tensor(np.asarray(array, dtype=np.float32), device=like.device)


def zero_module(module):
    """Zero every parameter of ``module`` (initialisers keep zero parameters at zero)."""
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()
    module.unetlab_zero_init = True
    return module


def attention(q, k, v, fp32_softmax: bool = False, fused: bool = True):
    """Softmax attention over (batch, heads, length, head_dim) tensors."""
    if fp32_softmax and q.dtype != torch.float32:
        out_dtype = q.dtype
        q, k, v = q.float(), k.float(), v.float()
        with torch.autocast(device_type=q.device.type, enabled=False):
            return _attention(q, k, v, fused).to(out_dtype)
    return _attention(q, k, v, fused)


def _attention(q, k, v, fused):
    if fused:
        return F.scaled_dot_product_attention(q, k, v)
    w = torch.softmax(q @ k.transpose(-1, -2) * (q.shape[-1] ** -0.5), dim=-1)
    return w @ v
