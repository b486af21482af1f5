"""An einops backend for Jittor arrays, so that ``einops.rearrange`` and ``einops.reduce``
work on them as on PyTorch tensors.

einops finds its backends as subclasses of ``AbstractBackend`` whose framework is imported;
defining the class is the registration.  :mod:`jittor_ops` imports this module, so blocks
written against ``ops`` can use einops in both frameworks.
"""
from __future__ import annotations

from einops._backends import AbstractBackend

from . import layout

FLOAT_TYPES = ("float16", "bfloat16", "float32", "float64")


class JittorBackend(AbstractBackend):
    """The array operations einops needs, for ``jittor.Var``."""

    framework_name = "jittor"

    def __init__(self):
        import jittor

        self.jt = jittor

    def is_appropriate_type(self, tensor):
        return isinstance(tensor, self.jt.Var)

    def from_numpy(self, x):
        return self.jt.array(x)

    def to_numpy(self, x):
        return x.numpy()

    def arange(self, start, stop):
        return self.jt.arange(start, stop)

    def shape(self, x):
        return tuple(x.shape)

    def reshape(self, x, shape):
        return x.reshape(tuple(shape))

    def transpose(self, x, axes):
        return layout.permute(x, axes)  # a gather on the GPU, where Jittor would permute on the CPU

    def reduce(self, x, operation, axes):
        if operation not in ("min", "max", "sum", "mean", "prod", "any", "all"):
            raise NotImplementedError(f"unknown reduction {operation!r}")
        return getattr(x, operation)(tuple(axes))

    def stack_on_zeroth_dimension(self, tensors: list):
        return self.jt.stack(tensors)

    def add_axis(self, x, new_position):
        return x.unsqueeze(new_position)

    def tile(self, x, repeats):
        return x.repeat(*repeats)

    def concat(self, tensors, axis: int):
        return self.jt.concat(list(tensors), dim=axis)

    def is_float_type(self, x):
        return str(x.dtype) in FLOAT_TYPES
