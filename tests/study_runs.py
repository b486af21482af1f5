"""Finished run folders written directly (no training), with figures a test can predict."""
from __future__ import annotations

import numpy as np

from unetlab.run import jsonfiles, rundir
from unetlab.sampling import grid, save_png

from tiny import digits_run


def fake_run(root, variant, framework, *, seed=0, loss=0.1, img_s=100.0, sample_img_s=1000.0, peak_mem=None,
             fid=None, first_step_s=1.0, steps=20, fid_curve=()):
    """A done run ``<variant>-<framework>-s<seed>`` under ``root`` whose losses fall to ``loss``
    (the last five logged values all equal ``loss``), logged every step at ``img_s``."""
    run_dir = root / f"{variant}-{framework}-s{seed}"
    spec = digits_run(steps)
    jsonfiles.write_json(run_dir / rundir.CONFIG, {"spec": spec, "run": {
        "framework": framework, "seed": seed, "ablation": root.name, "variant": variant}})
    records = []
    for step in range(1, steps + 1):
        value = loss if step > steps - 5 else loss * (1 + (steps - 5 - step + 1) / steps)
        records.append({"step": step, "loss": value, "lr": 2e-4, "grad_norm": 1.0, "step_time": 32 / img_s,
                        "img_s": img_s, "peak_mem": peak_mem, "elapsed": first_step_s + (step - 1) * 32 / img_s})
    for step, value in fid_curve:
        records[step - 1]["fid"] = value
    jsonfiles.append_jsonl(run_dir / rundir.METRICS, records)
    summary = {"status": "done", "step": steps, "framework": framework, "sample_img_s": sample_img_s,
               "params": 1000, "gflops": 0.01, "first_step_s": first_step_s, "peak_mem": peak_mem}
    if fid is not None:
        summary["fid"] = {"value": fid, "name": "FD-small", "n": 64, "sampler": "ddim", "steps": 5, "eta": 0.0,
                          "ema": True, "mode": "small-net", "reference": "dataset", "framework": framework}
    jsonfiles.write_json(run_dir / rundir.SUMMARY, summary)
    rng = np.random.default_rng(seed)
    save_png(grid(rng.integers(0, 256, (16, 16, 16, 1), dtype=np.uint8)), run_dir / rundir.GRID)
    return run_dir


def two_framework_ablation(root):
    """Variants ``a`` (both frameworks, Jittor half as fast) and ``b`` (PyTorch only)."""
    fake_run(root, "a", "torch", loss=0.10, img_s=200.0, sample_img_s=1000.0, peak_mem=2**20, fid=2.0,
             first_step_s=0.5)
    fake_run(root, "a", "jittor", loss=0.11, img_s=100.0, sample_img_s=1500.0, peak_mem=3 * 2**20, fid=3.0,
             first_step_s=80.0)
    fake_run(root, "b", "torch", loss=0.2)
    return root
