"""Time one DDPM CIFAR-10 training step (forward, MSE on eps, backward, clip, Adam) of
unetlab's ``ddpm`` preset beside the independent plain-PyTorch network in
``reference_ddpm.py``, in one run, and print the ratios.

    python benchmarks/ddpm_train_step.py --batch 16 --steps 3 [--frameworks torch,jittor]

unetlab's PyTorch step runs as the trainer runs it when a spec leaves the layout unset
(channels-last on the CPU); the same step in the default layout (NCHW) and the reference in
channels-last are timed too, so that layout and implementation can be told apart.

Runs on the CPU or, when one is visible, a CUDA GPU (PyTorch; Jittor as it is set up).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_ddpm import Reference  # noqa: E402

from unetlab import build_model  # noqa: E402
from unetlab.frameworks import backend_for, ops_for  # noqa: E402


def time_steps(step, synchronize, steps, warmup):
    for _ in range(warmup):
        step()
    synchronize()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def reference_step_time(batch, steps, warmup, channels_last=False):
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    model = Reference().to(dev).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=2e-4)
    x, noise = torch.randn(batch, 3, 32, 32, device=dev), torch.randn(batch, 3, 32, 32, device=dev)
    t = torch.randint(0, 1000, (batch,), device=dev)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = ((model(x, t) - noise) ** 2).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    return time_steps(step, sync, steps, warmup)


def unetlab_step_time(framework, batch, steps, warmup, channels_last=None):
    b, ops = backend_for(framework), ops_for(framework)
    model = build_model("ddpm", framework)
    b.set_train(model, True)
    forward = b.fast_forward(model, None, channels_last)  # None: the trainer's default layout
    opt = b.Optimizer(model, "adam", 2e-4, grad_clip=1.0)
    rng = np.random.default_rng(0)
    x = b.tensor(rng.standard_normal((batch, 3, 32, 32), dtype=np.float32))
    noise = b.tensor(rng.standard_normal((batch, 3, 32, 32), dtype=np.float32))
    t = b.tensor(rng.integers(0, 1000, batch))

    def step():
        opt.step(((ops.as_float(forward(x, t)) - noise) ** 2).mean())

    return time_steps(step, b.synchronize, steps, warmup)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--frameworks", default="torch,jittor")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    ref = reference_step_time(args.batch, args.steps, args.warmup)
    print(f"reference (plain PyTorch)                batch {args.batch}: {ref:.3f} s/step")
    ref_cl = reference_step_time(args.batch, args.steps, args.warmup, channels_last=True)
    print(f"reference, channels-last                 batch {args.batch}: {ref_cl:.3f} s/step   "
          f"ratio to reference {ref_cl / ref:.2f}")
    for fw in args.frameworks.split(","):
        layouts = [(None, "as trained"), (False, "NCHW")] if fw == "torch" else [(None, "")]
        for channels_last, label in layouts:
            s = unetlab_step_time(fw, args.batch, args.steps, args.warmup, channels_last)
            name = f"unetlab ddpm ({fw}{', ' + label if label else ''})"
            print(f"{name:40s} batch {args.batch}: {s:.3f} s/step   ratio to reference {s / ref:.2f}")


if __name__ == "__main__":
    main()
