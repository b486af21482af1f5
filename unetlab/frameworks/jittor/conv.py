"""Jittor's ``Conv2d`` with a second way to compute: unfold (im2col) and one cuBLAS matrix product.

Jittor lowers a convolution to cuDNN (GPU) or oneDNN (CPU) when it has them; otherwise it runs
its own generic kernel, a reduction over a 7-d index space (batch, out, in, height, width,
kernel height, kernel width).  On a CUDA toolkit whose cuDNN Jittor cannot use (CUDA 13 with
cuDNN 9), every convolution takes that path.  ``gemm`` mode instead gathers the input patches
into a (in*kh*kw, batch*oh*ow) matrix and multiplies it by the weight as one 2-d matrix product,
which Jittor sends to cuBLAS; the gradients follow from Jittor's autograd (the gather's gradient
is a scatter-add).  Parameters are ``nn.Conv2d``'s, so names and shapes are unchanged.

``$UNETLAB_JITTOR_CONV`` chooses: ``auto`` (default: ``gemm`` on a GPU without cuDNN, else
Jittor's own), ``jittor`` or ``gemm``.
"""
from __future__ import annotations

import os

from . import runtime as jittor_runtime
from ...errors import UnetlabError
from .matmul import matmul

jt = jittor_runtime.import_jittor()
from jittor import nn  # noqa: E402

MODES = ("auto", "jittor", "gemm")
#: Largest patch matrix (elements) built at once; larger batches are split.  Keeps every index
#: Jittor computes for the gather and its scatter-add well inside 32 bits.
MAX_PATCH_ELEMENTS = 2 ** 30


def conv_mode() -> str:
    """``jittor`` or ``gemm``: what ``$UNETLAB_JITTOR_CONV`` asks for on this set-up."""
    mode = os.environ.get("UNETLAB_JITTOR_CONV", "auto") or "auto"
    if mode not in MODES:
        raise UnetlabError(f"UNETLAB_JITTOR_CONV={mode!r}: expected one of {', '.join(MODES)}")
    if mode == "auto":
        no_cudnn = getattr(jt.compile_extern, "cudnn_ops", None) is None
        return "gemm" if jt.flags.use_cuda and no_cudnn else "jittor"
    return mode


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def conv2d_gemm(x, weight, bias=None, stride=1, padding=0):
    """``conv2d`` (no dilation, no groups) as im2col and one matrix product."""
    n, c, h, w = x.shape
    co, ci, kh, kw = weight.shape
    if ci != c:
        raise UnetlabError(f"conv2d: input has {c} channels, weight expects {ci}")
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    per_image = c * kh * kw * oh * ow
    step = max(1, MAX_PATCH_ELEMENTS // per_image)
    if n > step:  # split the batch so that no patch matrix is larger than the limit
        parts = [conv2d_gemm(x[i:i + step], weight, bias, stride, padding) for i in range(0, n, step)]
        return jt.concat(parts, dim=0)
    if (kh, kw, sh, sw, ph, pw) == (1, 1, 1, 1, 0, 0):
        cols = x.transpose(1, 0, 2, 3).reshape(c, n * h * w)
    else:
        cols = x.reindex([c, kh, kw, n, oh, ow],
                         ["i3", "i0", f"i4*{sh}+i1-{ph}", f"i5*{sw}+i2-{pw}"])
        cols = cols.reshape(c * kh * kw, n * oh * ow)
    out = matmul(weight.reshape(co, c * kh * kw), cols).reshape(co, n, oh, ow).transpose(1, 0, 2, 3)
    if bias is not None:
        out = out + bias.reshape(1, co, 1, 1).cast(out.dtype)
    return out


class Conv2d(nn.Conv2d):
    """``jittor.nn.Conv2d`` that runs as :func:`conv2d_gemm` where :func:`conv_mode` says so."""

    def execute(self, x):
        plain = self.groups == 1 and _pair(self.dilation) == (1, 1)
        if plain and conv_mode() == "gemm":
            return conv2d_gemm(x, self.weight, self.bias, self.stride, self.padding)
        return super().execute(x)
