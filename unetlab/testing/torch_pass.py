"""One forward and backward pass of a block in PyTorch (mirrors :mod:`.jittor_pass`)."""
from __future__ import annotations

import numpy as np
import torch


def forward_and_grads(block, inputs: dict, call, projection) -> dict:
    """``{"output": y, "grad <input>": ..., "grad <parameter>": ...}`` as numpy arrays.

    ``inputs``: numpy arrays by name (float ones are differentiated); ``call(block, tensors)``
    runs the block; the loss is ``sum(y * projection(y.shape))``.
    """
    block.train(True)
    tensors = {k: torch.from_numpy(np.array(v)).requires_grad_(v.dtype.kind == "f") for k, v in inputs.items()}
    out = call(block, tensors)
    loss = (out * torch.from_numpy(projection(tuple(out.shape)))).sum()
    wrt = [(f"grad {k}", t) for k, t in tensors.items() if t.requires_grad]
    wrt += [(f"grad {n}", p) for n, p in block.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, [t for _, t in wrt], allow_unused=True)
    result = {"output": out.detach().numpy()}
    for (name, t), g in zip(wrt, grads):
        result[name] = np.zeros(tuple(t.shape), np.float32) if g is None else g.detach().numpy()
    return result
