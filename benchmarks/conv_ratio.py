"""How much slower Jittor is than PyTorch at a U-Net's bread-and-butter layer, on the CPU.

Times a 64->64 3x3 convolution (padding 1, with bias), forward and backward (gradients of the
input, weight and bias), on an 8x64x32x32 input, in both frameworks in one process: warm-up
iterations first (Jittor compiles its kernels then), then the median of ``--rounds`` x
``--repeats`` timed iterations each.  The rounds alternate PyTorch and Jittor, so that a
change in the machine's load mid-run (a shared machine) hits both rather than one.  Jittor
runs lazily, so every Jittor iteration ends with ``jt.sync(grads)`` and
``jt.sync_all(True)`` before the clock is read.

The backward pass starts from a fixed random output gradient, not from ``y.sum()``: with the
all-ones gradient of a sum, Jittor's graph optimiser simplifies the backward pass (it then
takes about a fifth of the time) and would skip work PyTorch does.

Prints both times and the Jittor/PyTorch ratio; exits with status 1 when the ratio exceeds
``--max-ratio``, so it can guard against a slow Jittor set-up (e.g. oneDNN missing).

    python benchmarks/conv_ratio.py [--rounds 3] [--repeats 10] [--warmup 5] [--max-ratio 2.0]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

SHAPE = (8, 64, 32, 32)   # N, C, H, W
OUT_CHANNELS = 64
KERNEL = 3


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds of PyTorch then Jittor")
    p.add_argument("--repeats", type=int, default=10, help="timed iterations per framework and round")
    p.add_argument("--warmup", type=int, default=5, help="untimed iterations first (Jittor compiles here)")
    p.add_argument("--max-ratio", type=float, default=2.0, help="exit 1 when jittor/torch exceeds this")
    args = p.parse_args(argv)
    if min(args.rounds, args.repeats, args.warmup) < 1:
        p.error("--rounds, --repeats and --warmup must be at least 1")
    return args


def timed_ms(step, repeats: int) -> list[float]:
    """Wall times of ``repeats`` calls of ``step()``, in milliseconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def median_ms(steps: dict, warmup: int, rounds: int, repeats: int) -> dict:
    """Median time of each named step, after ``warmup`` untimed calls, over alternating rounds."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            times[name] += timed_ms(step, repeats)
    return {name: statistics.median(t) for name, t in times.items()}


def torch_step(x_np, w_np, b_np, g_np):
    import torch

    conv = torch.nn.Conv2d(SHAPE[1], OUT_CHANNELS, KERNEL, padding=KERNEL // 2)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(w_np))
        conv.bias.copy_(torch.from_numpy(b_np))
    x = torch.from_numpy(x_np).requires_grad_(True)
    g = torch.from_numpy(g_np)

    def step():
        x.grad = None
        conv.zero_grad(set_to_none=True)
        conv(x).backward(g)
        return x.grad, conv.weight.grad, conv.bias.grad

    return step


def jittor_step(jt, x_np, w_np, b_np, g_np):
    conv = jt.nn.Conv2d(SHAPE[1], OUT_CHANNELS, KERNEL, padding=KERNEL // 2)
    conv.weight.assign(jt.array(w_np))
    conv.bias.assign(jt.array(b_np))
    x = jt.array(x_np)
    g = jt.array(g_np)

    def step():
        grads = jt.grad((conv(x) * g).sum(), [x, conv.weight, conv.bias])
        jt.sync(grads)
        jt.sync_all(True)
        return grads

    return step


def check_same_gradients(torch_grads, jittor_grads) -> None:
    for name, t, j in zip(("input", "weight", "bias"), torch_grads, jittor_grads):
        np.testing.assert_allclose(j.numpy(), t.numpy(), rtol=1e-3, atol=1e-3,
                                   err_msg=f"jittor and torch disagree on the {name} gradient")


def main(argv=None) -> int:
    args = parse_args(argv)
    # a CPU comparison: keep Jittor off any GPU (must be set before unetlab is imported)
    os.environ["UNETLAB_JITTOR_DEVICE"] = "cpu"
    import torch

    from unetlab.frameworks.jittor import setup as jittor_setup
    from unetlab.frameworks.jittor.runtime import import_jittor

    jt = import_jittor("cpu")
    rng = np.random.default_rng(0)
    fan_in = SHAPE[1] * KERNEL * KERNEL
    x_np = rng.standard_normal(SHAPE).astype(np.float32)
    w_np = rng.uniform(-1, 1, (OUT_CHANNELS, SHAPE[1], KERNEL, KERNEL)).astype(np.float32) / np.sqrt(fan_in)
    b_np = rng.uniform(-1, 1, OUT_CHANNELS).astype(np.float32) / np.sqrt(fan_in)
    g_np = rng.standard_normal((SHAPE[0], OUT_CHANNELS, *SHAPE[2:])).astype(np.float32)

    t_step, j_step = torch_step(x_np, w_np, b_np, g_np), jittor_step(jt, x_np, w_np, b_np, g_np)
    check_same_gradients(t_step(), j_step())
    medians = median_ms({"torch": t_step, "jittor": j_step}, args.warmup, args.rounds, args.repeats)
    torch_ms, jittor_ms = medians["torch"], medians["jittor"]
    ratio = jittor_ms / torch_ms

    n, c, h, w = SHAPE
    print(f"conv {c}->{OUT_CHANNELS} {KERNEL}x{KERNEL}, input {n}x{c}x{h}x{w}, forward+backward on the CPU "
          f"({os.cpu_count()} cores), median of {args.rounds}x{args.repeats} after {args.warmup} warm-up")
    print(f"torch  {torch.__version__:<16} {torch_ms:9.2f} ms  ({torch.get_num_threads()} threads)")
    print(f"jittor {jt.__version__:<16} {jittor_ms:9.2f} ms  ({jittor_setup.prepare()})")
    verdict = "ok" if ratio <= args.max_ratio else "TOO SLOW"
    print(f"ratio jittor/torch: {ratio:.2f} (max {args.max_ratio:.2f}): {verdict}")
    return 0 if ratio <= args.max_ratio else 1


if __name__ == "__main__":
    sys.exit(main())
