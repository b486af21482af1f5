"""Minimal reproducer: the input gradient of Jittor's own CUDA convolution writes out of bounds.

A 3x3 convolution with stride 2 and padding 1, run by Jittor's generic CUDA kernels (no cuDNN),
then the gradient with respect to its input.  Under ``compute-sanitizer --tool memcheck`` the
backward kernel reports invalid global atomics just before the gradient's allocation; at a large
enough batch the process dies with ``cudaErrorIllegalAddress``.  The gradient is compared with
PyTorch's where PyTorch is installed.

    compute-sanitizer --tool memcheck --print-limit 6 python repro.py [BATCH ...]   # default 4 64

Jittor is imported plainly, on the GPU.  ``REPRO_PREPARE=unetlab`` prepares it through unetlab's
CUDA 13 overlay first (Jittor 1.3.11 does not build its core against CUDA 13 unaided).
"""
import os
import sys

import numpy as np

if os.environ.get("REPRO_PREPARE") == "unetlab":
    from unetlab.frameworks.jittor.runtime import import_jittor

    jt = import_jittor("cuda")
else:
    import jittor as jt

jt.flags.use_cuda = 1
print("jittor", jt.__version__, "use_cuda", jt.flags.use_cuda,
      "cudnn loaded", getattr(jt.compile_extern, "cudnn_ops", None) is not None, flush=True)

for batch in [int(a) for a in sys.argv[1:]] or [4, 64]:
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((batch, 32, 32, 32), dtype=np.float32)
    w_np = rng.standard_normal((64, 32, 3, 3), dtype=np.float32) * 0.05
    x, w = jt.array(x_np), jt.array(w_np)
    y = jt.nn.conv2d(x, w, None, 2, 1)  # stride 2, padding 1: (batch, 64, 16, 16)
    gx = jt.grad(y.sqr().sum(), x)
    jt.sync_all(True)
    line = f"batch {batch}: y {tuple(y.shape)}, grad x {tuple(gx.shape)}"
    try:
        import torch

        tx = torch.from_numpy(x_np).cuda().requires_grad_()
        ty = torch.nn.functional.conv2d(tx, torch.from_numpy(w_np).cuda(), stride=2, padding=1)
        (ref,) = torch.autograd.grad(ty.square().sum(), tx)
        ref = ref.cpu().numpy()
        line += f", max|grad - torch| / max|torch| = {np.abs(gx.numpy() - ref).max() / np.abs(ref).max():.2e}"
    except ImportError:
        pass
    print(line, flush=True)
