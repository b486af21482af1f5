"""Side-by-side speed and memory of a spec: training and sampling throughput, memory (peak
allocated by live tensors, and held by the allocator) and achieved TFLOP/s, across frameworks,
precisions, batch sizes and torch.compile, in one process."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
import itertools
import time

import numpy as np

from .errors import UnetlabError
from .files import flocked
from .frameworks import PRECISIONS, backend_for, ops_for
from .frameworks.jittor.setup import cuda_device_visible
from .metrics.model_report import forward_gflops
from .model import build_model
from .spec.model import resolve_model_spec


@dataclass
class BenchCase:
    framework: str
    precision: str
    batch_size: int
    compile: str | None = None  # a torch.compile mode, None for eager
    channels_last: bool | None = None  # None: the layout training gets when the spec leaves it unset

    def skip_reason(self, on_gpu: bool) -> str | None:
        if self.precision not in PRECISIONS[self.framework]:
            return f"{self.framework} has no {self.precision} mode"
        if (self.compile or self.channels_last) and self.framework != "torch":
            return "compile and channels_last are torch only"
        if self.precision in ("tf32", "bf16", "fp16") and not on_gpu:
            return f"{self.precision} is measured on a GPU only"
        return None


def _time(fn, steps: int, synchronize) -> float:
    synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    synchronize()
    return time.perf_counter() - t0


def file_lock(path):
    """A context-manager factory holding an exclusive ``flock`` on ``path``: jobs sharing a GPU
    pass it as ``measure(exclusive=...)`` so that their timed parts never overlap."""
    return lambda: flocked(path)


def measure(spec, case: BenchCase, steps: int = 5, warmup: int = 2, seed: int = 0, model=None,
            exclusive=None, repeats: int = 1) -> dict:
    """Train and sampling throughput of one case; data stays resident on the device.

    ``model`` replaces the spec's model (a network of the same input and output, e.g. an
    independent implementation timed beside it); ``exclusive`` is a context manager held around
    the timed parts only (warm-up and compilation run outside it), to keep a shared GPU quiet;
    with ``repeats`` > 1 the fastest of that many timed runs counts (other work can only slow one).
    """
    resolved = resolve_model_spec(spec)
    b, ops = backend_for(case.framework), ops_for(case.framework)
    if model is None:
        model = build_model(resolved, case.framework, seed=seed)
    b.set_train(model, True)
    layout = b.channels_last_default(case.compile) if case.channels_last is None else case.channels_last
    forward = b.fast_forward(model, case.compile, layout)
    opt = b.Optimizer(model, "adam", 2e-4, grad_clip=1.0)
    rng = np.random.default_rng(seed)
    shape = (case.batch_size, resolved.in_channels, resolved.image_size, resolved.image_size)
    x, target = b.tensor(rng.standard_normal(shape, dtype=np.float32)), b.tensor(rng.standard_normal(shape, dtype=np.float32))
    t = b.tensor(rng.integers(0, 1000, case.batch_size))
    exclusive = exclusive or contextlib.nullcontext

    def train_step():
        with b.autocast(case.precision):
            out = forward(x, t)
        opt.step(((ops.as_float(out) - target) ** 2).mean())

    def sample_step():
        with b.no_grad(), b.autocast(case.precision):
            b.materialize(forward(x, t))

    b.reset_peak_memory()
    first = _time(train_step, 1, b.synchronize)
    _time(train_step, max(warmup - 1, 0), b.synchronize)
    with exclusive():
        train_s = min(_time(train_step, steps, b.synchronize) for _ in range(repeats))
    peak, held = b.peak_memory_bytes(), b.held_memory_bytes()
    b.set_train(model, False)
    first_sample = _time(sample_step, 1, b.synchronize)
    _time(sample_step, max(warmup - 1, 0), b.synchronize)
    with exclusive():
        sample_s = min(_time(sample_step, steps, b.synchronize) for _ in range(repeats))
    gflops = forward_gflops(resolved)
    train_img_s = steps * case.batch_size / train_s
    return {
        "framework": case.framework, "precision": case.precision, "batch": case.batch_size,
        "compile": case.compile or "off", "channels_last": layout, "device": b.device_name(),
        "first_step_s": round(first, 3), "first_sample_s": round(first_sample, 3),
        "step_s": round(train_s / steps, 4), "train_img_s": round(train_img_s, 1),
        "sample_img_s": round(steps * case.batch_size / sample_s, 1),
        "train_tflop_s": round(train_img_s * 3 * gflops / 1e3, 2),
        "peak_gib": round(peak / 2 ** 30, 2) if peak is not None else None,
        "held_gib": round(held / 2 ** 30, 2) if held is not None else None,
    }


def run_bench(spec, frameworks, precisions, batch_sizes, compile_modes, steps=5, warmup=2, on_gpu=None,
              log=print, channels_last=(None,)) -> list[dict]:
    """Every valid combination measured in this process; skipped ones say why."""
    if on_gpu is None:
        on_gpu = cuda_device_visible()
    rows = []
    for fw, prec, bs, comp, cl in itertools.product(frameworks, precisions, batch_sizes, compile_modes,
                                                    channels_last):
        case = BenchCase(fw, prec, bs, comp, cl)
        reason = case.skip_reason(on_gpu)
        if reason:
            continue
        try:
            row = measure(spec, case, steps=steps, warmup=warmup)
        except UnetlabError:
            raise
        except Exception as exc:  # noqa: BLE001 - an OOM or backend failure is a result too
            row = {"framework": fw, "precision": prec, "batch": bs, "compile": comp or "off", "channels_last": cl,
                   "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:100]}"}
        log(row)
        rows.append(row)
    return rows
