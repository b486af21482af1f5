"""Random parameters for a parity check: every one non-zero, the zero-initialised ones too."""
from __future__ import annotations

import zlib

import numpy as np

#: spread of the 1-d parameters around their usual start (1 for scales, 0 for shifts)
VECTOR_SPREAD = 0.5


def random_parameters(shapes: dict, seed: int) -> dict:
    """Arrays for every name in ``shapes``, each from ``(seed, name)``.

    Kernels, tables and their biases: U(+-1/sqrt(fan_in)); other 1-d ``weight`` (scales):
    1 + N(0, 0.5); other 1-d arrays (shifts): N(0, 0.5).  So a block whose output projection
    starts at zero is checked through that projection too.
    """
    out = {}
    for name, shape in shapes.items():
        shape = tuple(shape)
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        stem, _, leaf = name.rpartition(".")
        kernel = shapes.get(f"{stem}.weight") if stem else None
        if len(shape) >= 2 or (leaf == "bias" and kernel is not None and len(kernel) >= 2):
            fan_in = int(np.prod((shape if len(shape) >= 2 else tuple(kernel))[1:]))
            bound = 1.0 / np.sqrt(max(fan_in, 1))
            out[name] = rng.uniform(-bound, bound, size=shape).astype(np.float32)
        else:
            base = 1.0 if leaf == "weight" else 0.0
            out[name] = (base + VECTOR_SPREAD * rng.standard_normal(shape)).astype(np.float32)
    return out
