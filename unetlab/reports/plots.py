"""PNG plots of an ablation's runs (matplotlib, Agg): loss per step, loss over time, and
torch against jittor where a variant ran in both.

Each curve is drawn twice: the raw logged losses (each record's mean over its log window),
thin and faint, and over them a debiased exponential moving average of those records
(:func:`unetlab.run.loss_log.debiased_ema`), which starts at the first record and invents nothing.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from ..run import jsonfiles, rundir
from ..run.loss_log import debiased_ema
from ..frameworks import FRAMEWORKS


def cumulative_elapsed(records: list[dict]) -> np.ndarray:
    """Training seconds up to each record, across resumes (each session's clock starts at 0)."""
    out, offset, previous = [], 0.0, 0.0
    for r in records:
        t = r.get("elapsed") or 0.0
        if t < previous:
            offset += previous
        previous = t
        out.append(offset + t)
    return np.array(out)


def _curves(run_dirs) -> dict:
    """ablation -> list of (label parts, framework, steps, elapsed, smoothed losses)."""
    out = defaultdict(list)
    for d in run_dirs:
        config = jsonfiles.read_json(Path(d) / rundir.CONFIG) or {}
        run = config.get("run", {})
        records = [r for r in jsonfiles.read_metrics(Path(d) / rundir.METRICS) if r.get("loss") is not None]
        if not records:
            continue
        variant = run.get("variant", Path(d).name)
        if run.get("grid_label"):
            variant += f" [{run['grid_label']}]"
        if run.get("trial") is not None:  # a search's trials are runs of their own, not seeds
            variant += f" t{run['trial']}"
        out[run.get("ablation", Path(d).parent.name)].append({
            "variant": variant, "framework": run.get("framework", "?"), "seed": run.get("seed", 0),
            "step": np.array([r["step"] for r in records]), "elapsed": cumulative_elapsed(records),
            "raw": np.array([r["loss"] for r in records]),
            "loss": debiased_ema([r["loss"] for r in records])})
    return out


def _axes(title: str, xlabel: str):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("training loss (faint: logged; solid: debiased EMA)")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    return fig, ax


def save_figure(fig, path: Path, rect=None) -> Path:
    """Lay out ``fig`` (within ``rect``, if given), write it to ``path`` (its folder made) and
    close it; returns ``path``."""
    import matplotlib.pyplot as plt

    path = Path(path)
    fig.tight_layout(**({"rect": rect} if rect is not None else {}))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _plot_family(curves: list, x: str, title: str, xlabel: str, path: Path) -> Path:
    """One colour per variant (+framework when several): each seed thin, their mean thick."""
    fig, ax = _axes(title, xlabel)
    frameworks = {c["framework"] for c in curves}
    groups = defaultdict(list)
    for c in curves:
        groups[c["variant"] + (f" ({c['framework']})" if len(frameworks) > 1 else "")].append(c)
    for i, (label, members) in enumerate(sorted(groups.items())):
        colour = f"C{i % 10}"
        for c in members:
            ax.plot(c[x], c["raw"], color=colour, lw=0.6, alpha=0.25)
            ax.plot(c[x], c["loss"], color=colour, lw=0.8 if len(members) > 1 else 1.6,
                    alpha=0.4 if len(members) > 1 else 1.0, label=None if len(members) > 1 else label)
        if len(members) > 1:
            n = min(len(c["loss"]) for c in members)
            ax.plot(members[0][x][:n], np.mean([c["loss"][:n] for c in members], axis=0), color=colour, lw=2,
                    label=f"{label}, mean of {len(members)} seeds")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def _plot_frameworks(curves: list, title: str, path: Path) -> Path | None:
    """torch (solid) against jittor (dashed) for each variant/seed that ran in both."""
    pairs = defaultdict(dict)
    for c in curves:
        pairs[(c["variant"], c["seed"])][c["framework"]] = c
    both = {k: v for k, v in sorted(pairs.items()) if set(FRAMEWORKS) <= set(v)}
    if not both:
        return None
    fig, ax = _axes(title, "step")
    for i, ((variant, seed), fw) in enumerate(both.items()):
        colour = f"C{i % 10}"
        for framework, style in (("torch", "-"), ("jittor", "--")):
            c = fw[framework]
            ax.plot(c["step"], c["raw"], style, color=colour, lw=0.6, alpha=0.25)
            ax.plot(c["step"], c["loss"], style, color=colour, lw=1.4, label=f"{variant} s{seed} {framework}")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def write_plots(run_dirs, out_dir: Path) -> list[Path]:
    """Write the PNGs for the runs in ``run_dirs`` into ``out_dir``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    out_dir = Path(out_dir)
    written = []
    for ablation, curves in sorted(_curves(run_dirs).items()):
        written.append(_plot_family(curves, "step", f"{ablation}: loss per step", "step",
                                    out_dir / f"{ablation}-loss-steps.png"))
        written.append(_plot_family(curves, "elapsed", f"{ablation}: loss over training time",
                                    "elapsed training seconds", out_dir / f"{ablation}-loss-time.png"))
        overlay = _plot_frameworks(curves, f"{ablation}: torch (solid) vs jittor (dashed)",
                                   out_dir / f"{ablation}-torch-vs-jittor.png")
        if overlay:
            written.append(overlay)
    return written
