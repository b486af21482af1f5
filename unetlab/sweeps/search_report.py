"""``unetlab table RUNS --search``: each study's best trials, parameter importances and plots.

Importances are Optuna's default, fANOVA (a random forest over the complete trials; it needs
scikit-learn, which unetlab already depends on for its digits data), seeded so that a report
reads the same twice.  Plots are plain matplotlib from the study's trials, one set per study:
``search-<ablation>-<variant>-<framework>-history.png`` (objective against trial number, best so far),
``-importance.png``, ``-slice.png`` (objective against each sampled value) and ``-curves.png``
(the pruner's metric against step, pruned trials dashed).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
import re

import pandas as pd

from ..errors import UnetlabError
from ..reports.table import _fmt_param, _param_text
from .search_optuna import JOURNAL, storage_for
from .search_spec import require_optuna

#: How many of a study's best trials the report lists.
BEST = 5


def load_studies(root: Path, storage: str | None = None) -> list:
    """Every study in the journal files at or below ``root`` (or in the database ``storage``)."""
    optuna = require_optuna("unetlab table --search")
    root = Path(root)
    if storage:
        stores = [storage_for(root, storage)]
    else:
        journals = [root / JOURNAL] if (root / JOURNAL).is_file() else sorted(root.rglob(JOURNAL))
        if not journals:
            raise UnetlabError(f"{root}: no search here (no {JOURNAL} at or below it; "
                               f"for a database give --storage URL)")
        stores = [storage_for(j.parent) for j in journals]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return [optuna.load_study(study_name=name, storage=store)
            for store in stores for name in sorted(optuna.get_all_study_names(store))]


def trials_frame(study) -> pd.DataFrame:
    """One row per trial: number, state, objective value, run folder, then its sampled values."""
    metric = study.user_attrs.get("metric", "value")
    rows = [{"trial": t.number, "state": t.state.name.lower(), metric: t.value, "run": t.user_attrs.get("run", ""),
             "last step": max(t.intermediate_values, default=None),
             **{k: shown_value(v) for k, v in t.params.items()}}
            for t in study.get_trials(deepcopy=False)]
    return pd.DataFrame(rows)


def best_trials(study, n: int = BEST) -> pd.DataFrame:
    """The ``n`` best complete trials, best first."""
    df = trials_frame(study)
    if df.empty:
        return df
    metric = study.user_attrs.get("metric", "value")
    done = df[df["state"] == "complete"]
    ascending = study.direction.name.lower() == "minimize"
    return done.sort_values(metric, ascending=ascending, kind="stable").head(n).reset_index(drop=True)


def importances(study) -> dict:
    """fANOVA importance of each sampled parameter (summing to 1); empty under two complete trials."""
    import optuna
    from optuna.importance import FanovaImportanceEvaluator

    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) < 2:
        return {}
    try:
        return optuna.importance.get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0))
    except (RuntimeError, ValueError):  # e.g. every complete trial has the same values
        return {}


def describe(study) -> str:
    """The study's heading: objective, method, pruner and how its trials ended."""
    from collections import Counter

    attrs = study.user_attrs
    states = Counter(t.state.name.lower() for t in study.get_trials(deepcopy=False))
    return (f"study {study.study_name}: objective {attrs.get('metric', '?')} ({attrs.get('mode', '?')}), "
            f"method {attrs.get('method', '?')}, pruner {attrs.get('pruner', '?')}: "
            f"{sum(states.values())} trials ({', '.join(f'{n} {s}' for s, n in states.items())})")


def format_report(study, fmt: str = "terminal") -> str:
    """The study's heading, best trials and importances as text."""
    from tabulate import tabulate

    best = best_trials(study)
    lines = [describe(study)]
    if best.empty:
        lines.append("no complete trial yet")
    else:
        shown = best.drop(columns=["state"]).copy()
        shown.insert(0, "rank", range(1, len(shown) + 1))
        for col in shown.columns:
            if col not in ("rank", "run"):
                shown[col] = [_fmt_param(v) for v in shown[col]]
        lines.append(tabulate(shown, headers="keys", showindex=False, disable_numparse=True,
                              tablefmt="github" if fmt == "markdown" else "simple"))
    weights = importances(study)
    lines.append("importance (fANOVA): " + (", ".join(f"{k} {v:.2f}" for k, v in weights.items())
                                            if weights else "needs two complete trials with different values"))
    return "\n".join(lines)


# -- plots ---------------------------------------------------------------------------------------

def _slug(name: str) -> str:
    """``demo/a-torch`` -> ``demo-a-torch``: a study's name as a file name."""
    return re.sub(r"[^A-Za-z0-9_.+=-]", "_", name.replace("/", "-"))


def shown_value(value):
    """A stored parameter as the table shows it: a block choice (stored as JSON) as ``multihead(heads=4)``."""
    if isinstance(value, str) and value.startswith("{"):
        try:
            return _param_text(json.loads(value))
        except ValueError:
            return value
    return value


def write_search_plots(study, folder: Path) -> list[Path]:
    """The study's PNGs in ``folder``: history, importance (when known), slice, curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"search-{_slug(study.study_name)}"
    metric = study.user_attrs.get("metric", "objective")
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    minimize = study.direction.name.lower() == "minimize"
    paths = []

    fig, ax = plt.subplots(figsize=(6, 4))
    if complete:
        xs, ys = [t.number for t in complete], [t.value for t in complete]
        ax.plot(xs, ys, "o", label="complete")
        best, line = math.inf if minimize else -math.inf, []
        for y in ys:
            best = min(best, y) if minimize else max(best, y)
            line.append(best)
        ax.step(xs, line, where="post", label="best so far")
    for i, t in enumerate(pruned):
        ax.axvline(t.number, color="0.8", lw=1, zorder=0, label="pruned" if i == 0 else None)
    ax.set(xlabel="trial", ylabel=metric, title=study.study_name)
    ax.legend()
    paths.append(_save(fig, f"{stem}-history.png"))

    weights = importances(study)
    if weights:
        fig, ax = plt.subplots(figsize=(6, 0.6 + 0.4 * len(weights)))
        names = list(weights)[::-1]
        ax.barh(names, [weights[n] for n in names])
        ax.set(xlabel="importance (fANOVA)", title=study.study_name)
        paths.append(_save(fig, f"{stem}-importance.png"))

    params = list(dict.fromkeys(k for t in trials for k in t.params))
    if params:
        fig, axes = plt.subplots(1, len(params), figsize=(4 * len(params), 3.5), squeeze=False)
        for ax, key in zip(axes[0], params):
            done = [t for t in complete if key in t.params]
            dist = next((t.distributions[key] for t in trials if key in t.distributions), None)
            if isinstance(dist, optuna.distributions.CategoricalDistribution):
                labels = [str(shown_value(c)) for c in dist.choices]
                ax.plot([labels.index(str(shown_value(t.params[key]))) for t in done], [t.value for t in done], "o")
                ax.set_xticks(range(len(labels)), labels, rotation=20, fontsize=7)
            else:
                ax.plot([t.params[key] for t in done], [t.value for t in done], "o")
                if getattr(dist, "log", False):
                    ax.set_xscale("log")
            ax.set(xlabel=key, ylabel=metric)
        fig.suptitle(f"{study.study_name}: {metric} against each sampled value")
        paths.append(_save(fig, f"{stem}-slice.png"))

    if any(t.intermediate_values for t in trials):
        fig, ax = plt.subplots(figsize=(6, 4))
        for t in trials:
            steps = sorted(t.intermediate_values)
            style = dict(ls="--", color="0.6") if t.state == optuna.trial.TrialState.PRUNED else {}
            ax.plot(steps, [t.intermediate_values[s] for s in steps], marker="o", ms=3, label=f"t{t.number}",
                    **style)
        pruner = study.user_attrs.get("pruner", "")
        ax.set(xlabel="step", ylabel=pruner.split(" on ")[-1] if " on " in pruner else "reported value",
               title=f"{study.study_name}: {pruner or 'no pruner'} (pruned: dashed)")
        if len(trials) <= 12:
            ax.legend(fontsize=7)
        paths.append(_save(fig, f"{stem}-curves.png"))
    return paths


def _save(fig, path: str) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def show_search(root: Path, storage: str | None = None, fmt: str = "terminal", plots: Path | None = None) -> list:
    """Print every study's report; write its plots into ``plots`` (None: none).  Returns the studies."""
    studies = load_studies(root, storage)
    if not studies:
        raise UnetlabError(f"{root}: the search storage holds no study yet")
    written = []
    for i, study in enumerate(studies):
        print(("\n" if i else "") + format_report(study, fmt))
        if plots is not None:
            written += write_search_plots(study, plots)
    if written:
        print(f"\nplots: {', '.join(str(p) for p in written)}")
    return studies
