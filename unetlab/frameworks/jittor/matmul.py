"""Jittor matrix products that also run under Jittor's mixed precision.

With ``auto_mixed_precision_level`` set, Jittor cannot relay a float32 product to cuBLAS or
oneDNN: its multiply runs in float16 while the relayed result stays float32, and the relay stops
("Check failed ... size(65536) == size(32768)"); operands of two types stop cuBLAS too.  So under
mixed precision both operands go float16, as PyTorch's autocast does for its products.
"""
from __future__ import annotations

from . import runtime as jittor_runtime
from .layout import permute

jt = jittor_runtime.import_jittor()


def matmul(a, b):
    """``jt.matmul(a, b)``; under mixed precision in float16."""
    if jt.flags.auto_mixed_precision_level and (a.dtype != "float16" or b.dtype != "float16"):
        a, b = a.float16(), b.float16()
    return jt.matmul(a, b)


def _per_item(a, b, transpose_a: bool = False, transpose_b: bool = False):
    """Stack of ``op(a[i]) @ op(b[i])``: one 2-d (oneDNN) product per item of the leading axis."""
    def op(x, flag):
        return x.transpose(1, 0) if flag else x
    return jt.stack([matmul(op(a[i], transpose_a), op(b[i], transpose_b)) for i in range(a.shape[0])])


class _ItemwiseMatmul(jt.Function):
    """``a @ b`` (or ``a @ b^T``) over a leading batch axis, forward and backward as per-item 2-d
    products.  Differentiating the item slices themselves would cost a full-size zero array per
    item (Jittor's slice gradient), quadratic in the batch."""

    def __init__(self, transpose_b: bool):
        self.transpose_b = transpose_b

    def execute(self, a, b):
        self.a, self.b = a, b
        return _per_item(a, b, transpose_b=self.transpose_b)

    def grad(self, g):
        a, b = self.a, self.b
        if g is None:
            return None, None
        if self.transpose_b:  # c = a b^T: da = g b, db = g^T a
            da, db = _per_item(g, b), _per_item(g, a, transpose_a=True)
        else:                 # c = a b: da = g b^T, db = a^T g
            da, db = _per_item(g, b, transpose_b=True), _per_item(a, g, transpose_a=True)
        return da.cast(a.dtype), db.cast(b.dtype)


def batched_matmul(a, b, transpose_b: bool = False, itemwise: bool | None = None):
    """``a @ b`` (``a @ b^T`` with ``transpose_b``) for 3-d arrays (batch, n, k).

    On the GPU one cuBLAS batched product; on the CPU (``itemwise``, by default where there is no
    GPU), where Jittor would run a batched product as a broadcast multiply and reduce, one oneDNN
    product per item.
    """
    if itemwise is None:
        itemwise = not jt.flags.use_cuda
    if not itemwise:
        return matmul(a, permute(b, (0, 2, 1)) if transpose_b else b)
    return _ItemwiseMatmul(transpose_b)(a, b)
