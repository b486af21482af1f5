"""Curves grouped over seeds (``unetlab table --group``): per variant, the mean over seeds of the
smoothed loss and of the score recorded during training, with a 95% Student-t band.

Seeds are averaged at the steps every one of them logged; a variant with one seed is drawn as
its single curve, without a band.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy import stats

from ..run import jsonfiles, rundir
from ..run.loss_log import debiased_ema
from .plots import save_figure

BAND = "95% t-interval over seeds"


def _series(run_dir: Path) -> dict:
    config = jsonfiles.read_json(Path(run_dir) / rundir.CONFIG) or {}
    run = config.get("run", {})
    records = jsonfiles.read_jsonl(Path(run_dir) / rundir.METRICS)
    losses = [r for r in records if r.get("loss") is not None]
    scores = [r for r in records if r.get("fid") is not None]
    variant = run.get("variant", Path(run_dir).name) + (f" [{run['grid_label']}]" if run.get("grid_label") else "")
    return {"ablation": run.get("ablation", Path(run_dir).parent.name),
            "label": f"{variant} ({run.get('framework', '?')})",
            "loss": dict(zip((r["step"] for r in losses), debiased_ema([r["loss"] for r in losses]))),
            "score": {r["step"]: float(r["fid"]) for r in scores},
            "score_name": scores[0].get("fid_name", "score") if scores else None}


def seed_band(curves: list[dict], level: float = 0.95):
    """Steps all ``curves`` (step -> value) share, the mean there, and the band's low and high
    (Student t over curves; equal to the mean for one curve)."""
    steps = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
    values = np.array([[c[s] for s in steps] for c in curves], dtype=float).reshape(len(curves), len(steps))
    mean = values.mean(axis=0) if len(curves) else values.sum(axis=0)
    if len(curves) < 2:
        return np.array(steps), mean, mean, mean
    half = stats.t.ppf((1 + level) / 2, len(curves) - 1) * values.std(axis=0, ddof=1) / np.sqrt(len(curves))
    return np.array(steps), mean, mean - half, mean + half


def _plot(groups: dict, key: str, title: str, ylabel: str, path: Path, log: bool) -> Path | None:
    import matplotlib.pyplot as plt

    drawn = {label: [m[key] for m in members if m[key]] for label, members in sorted(groups.items())}
    drawn = {label: curves for label, curves in drawn.items() if curves}
    if not drawn:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for i, (label, curves) in enumerate(drawn.items()):
        steps, mean, low, high = seed_band(curves)
        colour = f"C{i % 10}"
        ax.plot(steps, mean, color=colour, lw=1.8, marker="o" if key == "score" else None, ms=3,
                label=f"{label}: mean of {len(curves)} seed{'s' if len(curves) > 1 else ''}")
        if len(curves) > 1:
            ax.fill_between(steps, low, high, color=colour, alpha=0.2, lw=0)
    ax.set_title(f"{title}\nband: {BAND}", fontsize=10)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def write_seed_plots(run_dirs, out_dir: Path) -> list[Path]:
    """Write ``<ablation>-loss-seeds.png`` and (where scored during training) ``<ablation>-score-seeds.png``."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    by_ablation = defaultdict(lambda: defaultdict(list))
    for d in run_dirs:
        series = _series(Path(d))
        by_ablation[series["ablation"]][series["label"]].append(series)
    written = []
    for ablation, groups in sorted(by_ablation.items()):
        names = {m["score_name"] for members in groups.values() for m in members if m["score_name"]}
        score = "/".join(sorted(names)) or "score"
        for key, title, ylabel, log in (("loss", "loss per step (debiased EMA)", "training loss", True),
                                        ("score", f"{score} during training", score, False)):
            path = _plot(groups, key, f"{ablation}: {title}", ylabel, Path(out_dir) / f"{ablation}-{key}-seeds.png", log)
            if path:
                written.append(path)
    return written
