"""One forward and backward pass of a block in Jittor (mirrors :mod:`.torch_pass`)."""
from __future__ import annotations

import numpy as np

from ..frameworks.jittor.runtime import import_jittor

jt = import_jittor()


def forward_and_grads(block, inputs: dict, call, projection) -> dict:
    """``{"output": y, "grad <input>": ..., "grad <parameter>": ...}`` as numpy arrays.

    ``inputs``: numpy arrays by name (float ones are differentiated); ``call(block, tensors)``
    runs the block; the loss is ``sum(y * projection(y.shape))``.  The block stays in training
    mode: Jittor's ``eval()`` stops the gradients of parameters.
    """
    block.train()
    tensors = {k: jt.array(np.array(v)) for k, v in inputs.items()}
    out = call(block, tensors)
    loss = (out * jt.array(projection(tuple(out.shape)))).sum()
    wrt = [(f"grad {k}", tensors[k]) for k, v in inputs.items() if v.dtype.kind == "f"]
    wrt += [(f"grad {n}", p) for n, p in block.named_parameters()]
    grads = jt.grad(loss, [t for _, t in wrt])
    result = {"output": out.numpy()}
    for (name, _), g in zip(wrt, grads):
        result[name] = np.asarray(g.numpy(), np.float32)
    return result
