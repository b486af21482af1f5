"""Jittor matrix products that also run under Jittor's mixed precision.

With ``auto_mixed_precision_level`` set, Jittor cannot relay a float32 product to cuBLAS or
oneDNN: its multiply runs in float16 while the relayed result stays float32, and the relay stops
("Check failed ... size(65536) == size(32768)"); operands of two types stop cuBLAS too.  So under
mixed precision both operands go float16, as PyTorch's autocast does for its products.
"""
from __future__ import annotations

from . import jittor_runtime

jt = jittor_runtime.import_jittor()


def matmul(a, b):
    """``jt.matmul(a, b)``; under mixed precision in float16."""
    if jt.flags.auto_mixed_precision_level and (a.dtype != "float16" or b.dtype != "float16"):
        a, b = a.float16(), b.float16()
    return jt.matmul(a, b)
