"""The layer vocabulary blocks are written against, in Jittor (mirrors ``torch_ops``)."""
from __future__ import annotations

import numpy as np
from einops import rearrange

from .jittor import conv as jittor_conv, runtime as jittor_runtime
from .jittor.matmul import batched_matmul

jt = jittor_runtime.import_jittor()
from jittor import nn  # noqa: E402

from .jittor import einops as jittor_einops  # noqa: E402,F401  (einops.rearrange on Jittor arrays)

NAME = "jittor"


class Module(nn.Module):
    """Jittor module whose ``forward`` is its call, as in PyTorch."""

    def execute(self, *args, **kwargs):
        return self.forward(*args, **kwargs)


ModuleList = nn.ModuleList
Conv2d = jittor_conv.Conv2d
ConvTranspose2d = nn.ConvTranspose2d
Linear = nn.Linear
Dropout = nn.Dropout
Embedding = nn.Embedding
Identity = nn.Identity




class GroupNorm(nn.GroupNorm):
    """Jittor's GroupNorm, with ``forward`` as in PyTorch."""

    def forward(self, x):
        return nn.GroupNorm.execute(self, x)


def Parameter(array: np.ndarray):
    """A trainable float32 parameter holding ``array`` (assign it to a module attribute)."""
    return jt.array(np.asarray(array, dtype=np.float32))


def silu(x):
    return x * jt.sigmoid(x)


def relu(x):
    return nn.relu(x)


def exp(x):
    return jt.exp(x)


def softmax(x, dim: int):
    return nn.softmax(x, dim=dim)


def cat(xs, dim: int):
    return jt.concat(list(xs), dim=dim)


def chunk(x, n: int, dim: int):
    return jt.chunk(x, n, dim=dim)


def pad(x, lrtb):
    """Zero-pad the last two dims by (left, right, top, bottom)."""
    return nn.pad(x, list(lrtb))


def upsample_nearest2x(x):
    n, c, h, w = x.shape
    return x.reindex([n, c, h * 2, w * 2], ["i0", "i1", "i2/2", "i3/2"])


def hflip(x):
    """Mirror the last (width) axis."""
    return x[..., ::-1]


def avg_pool2x(x):
    return nn.avg_pool2d(x, kernel_size=2, stride=2)


def sin(x):
    return jt.sin(x)


def cos(x):
    return jt.cos(x)


def as_float(x):
    return x.float32()


def constant(array: np.ndarray, like=None):
    return jt.array(np.asarray(array, dtype=np.float32))


def zero_module(module):
    """Zero every parameter of ``module`` (initialisers keep zero parameters at zero)."""
    for p in module.parameters():
        p.assign(jt.zeros_like(p))
    module.unetlab_zero_init = True
    return module


def attention(q, k, v, fp32_softmax: bool = False, fused: bool = True):
    """Softmax attention over (batch, heads, length, head_dim) arrays (Jittor has no fused kernel).

    ``fp32_softmax``: the softmax runs in float32; under Jittor's mixed precision the two
    products still run in float16 (Jittor cannot run a float32 product there: ``jittor_matmul``).
    """
    out_dtype = q.dtype
    heads = q.shape[1]
    q, k, v = (rearrange(a, "b h n d -> (b h) n d") for a in (q, k, v))
    logits = batched_matmul(q, k, transpose_b=True)
    if fp32_softmax:
        logits = logits.float32()
    weights = nn.softmax(logits * q.shape[-1] ** -0.5, dim=-1)
    return rearrange(batched_matmul(weights, v), "(b h) n d -> b h n d", h=heads).cast(out_dtype)
