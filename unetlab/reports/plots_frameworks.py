"""PyTorch against Jittor, one figure per ablation (matplotlib, Agg).

Panels: loss per step and loss over training time (a colour per framework, a line style per
variant; the time axis starts after the first step, whose compilation the table reports in
its own column), Jittor minus PyTorch loss per step, peak memory where it was measured, and
FID (or FD-small) during training where ``eval.every`` recorded it.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from ..run import jsonfiles, rundir
from .plots import cumulative_elapsed, save_figure

COLOURS = {"torch": "#1f77b4", "jittor": "#d62728"}
STYLES = ("-", "--", ":", "-.")


def run_curves(run_dir: Path) -> dict | None:
    """A run's logged curves: step, seconds after the first step, loss, memory and FID records."""
    run_dir = Path(run_dir)
    config = jsonfiles.read_json(run_dir / rundir.CONFIG) or {}
    summary = jsonfiles.read_json(run_dir / rundir.SUMMARY) or {}
    run = config.get("run", {})
    every = jsonfiles.read_metrics(run_dir / rundir.METRICS)
    if not any(r.get("loss") is not None for r in every):
        return None
    first = summary.get("first_step_s") or 0.0
    time = np.maximum(cumulative_elapsed(every) - first, 0.0)
    has_loss = np.array([r.get("loss") is not None for r in every])
    has_fid = np.array([r.get("fid") is not None for r in every])
    records = [r for r, keep in zip(every, has_loss) if keep]
    fid = [r for r, keep in zip(every, has_fid) if keep]
    variant = run.get("variant", run_dir.name) + (f" [{run['grid_label']}]" if run.get("grid_label") else "")
    return {"ablation": run.get("ablation", run_dir.parent.name), "variant": variant,
            "framework": run.get("framework", "?"), "seed": run.get("seed", 0),
            "step": np.array([r["step"] for r in records]),
            "time": time[has_loss],
            "loss": np.array([r["loss"] for r in records], dtype=float),
            "mem": np.array([r.get("peak_mem") if r.get("peak_mem") is not None else np.nan for r in records],
                            dtype=float) / 2**20,
            "fid_step": np.array([r["step"] for r in fid]), "fid_time": time[has_fid],
            "fid": np.array([r["fid"] for r in fid], dtype=float),
            "fid_name": fid[0].get("fid_name", "FID") if fid else "FID"}


def loss_difference(torch_curve: dict, jittor_curve: dict) -> tuple[np.ndarray, np.ndarray]:
    """(steps logged by both, Jittor loss minus PyTorch loss at each)."""
    steps, ti, ji = np.intersect1d(torch_curve["step"], jittor_curve["step"], return_indices=True)
    return steps, jittor_curve["loss"][ji] - torch_curve["loss"][ti]


def _draw(ax, curves, x, y, styles, ylabel, log=False):
    for c in curves:
        if len(c[y]) and np.isfinite(c[y]).any():
            ax.plot(c[x], c[y], STYLES[styles[c["variant"]] % len(STYLES)], color=COLOURS.get(c["framework"], "k"),
                    lw=1.3, alpha=0.85, label=f"{c['variant']} {c['framework']} s{c['seed']}")
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)


def _empty(ax, text):
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_ablation(name: str, curves: list[dict], path: Path) -> Path:
    """The six-panel framework figure of one ablation's runs, written to ``path``."""
    import matplotlib.pyplot as plt

    styles = {v: i for i, v in enumerate(sorted({c["variant"] for c in curves}))}
    fig, axes = plt.subplots(3, 2, figsize=(12, 11), dpi=100)
    (a_step, a_time), (a_diff, a_mem), (a_fid_step, a_fid_time) = axes
    _draw(a_step, curves, "step", "loss", styles, "logged loss", log=True)
    a_step.set(title="loss per step", xlabel="step")
    _draw(a_time, curves, "time", "loss", styles, "logged loss", log=True)
    a_time.set(title="loss over training time (after the first step)", xlabel="seconds after the first step")
    pairs = defaultdict(dict)
    for c in curves:
        pairs[(c["variant"], c["seed"])][c["framework"]] = c
    drawn = False
    for (variant, seed), both in sorted(pairs.items()):
        if {"torch", "jittor"} <= set(both):
            steps, diff = loss_difference(both["torch"], both["jittor"])
            a_diff.plot(steps, diff, STYLES[styles[variant] % len(STYLES)], color="k", lw=1.2, label=f"{variant} s{seed}")
            drawn = True
    if drawn:
        a_diff.axhline(0.0, color="0.6", lw=0.8)
        a_diff.set(title="Jittor loss minus PyTorch loss", xlabel="step", ylabel="loss difference")
        a_diff.grid(True, alpha=0.3)
        a_diff.legend(fontsize=7)
    else:
        _empty(a_diff, "no variant ran in both frameworks")
    if any(np.isfinite(c["mem"]).any() for c in curves):
        _draw(a_mem, curves, "step", "mem", styles, "peak MiB")
        a_mem.set(title="peak device memory", xlabel="step")
    else:
        _empty(a_mem, "memory not measured (CPU runs)")
    fid_runs = [c for c in curves if len(c["fid"])]
    if fid_runs:
        label = fid_runs[0]["fid_name"]
        for ax, x, xlabel in ((a_fid_step, "fid_step", "step"), (a_fid_time, "fid_time", "seconds after the first step")):
            for c in fid_runs:
                ax.plot(c[x], c["fid"], STYLES[styles[c["variant"]] % len(STYLES)], marker="o", ms=3,
                        color=COLOURS.get(c["framework"], "k"), label=f"{c['variant']} {c['framework']}")
            ax.set(title=f"{label} of the EMA weights during training", xlabel=xlabel, ylabel=label)
            ax.grid(True, alpha=0.3)
    else:
        _empty(a_fid_step, "no score during training (eval.every)")
        _empty(a_fid_time, "no score during training (eval.every)")
    a_step.legend(fontsize=7)
    fig.suptitle(f"{name}: PyTorch (blue) and Jittor (red); line style = variant")
    return save_figure(fig, path)


def write_framework_plots(run_dirs, out_dir: Path) -> list[Path]:
    """``<ablation>-frameworks.png`` for each ablation among ``run_dirs``; returns the paths."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    by_ablation = defaultdict(list)
    for d in run_dirs:
        curves = run_curves(d)
        if curves is not None:
            by_ablation[curves["ablation"]].append(curves)
    return [plot_ablation(name, curves, Path(out_dir) / f"{name}-frameworks.png")
            for name, curves in sorted(by_ablation.items())]
