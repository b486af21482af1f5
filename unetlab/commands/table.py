"""``unetlab table RUNS_DIR``: one row per run (or per seed group), and loss plots."""
from __future__ import annotations

from pathlib import Path

from ..reports.compare import compare, format_comparison
from ..reports.html import write_report
from ..reports.plots import write_plots
from ..reports.plots_forest import forest_plot
from ..reports.plots_frameworks import write_framework_plots
from ..reports.plots_seeds import write_seed_plots
from ..reports.table import arrange, format_table, load_bench_table, load_table, score_header
from ..run.loss_log import FINAL_LOSS_HELP
from ..run.rundir import Status
from ..reports.baseline import compare_to_baseline
from ..stats.inference import EXACT_MAX_PAIRS
from ..reports.baseline_table import format_vs
from ..sweeps.search_report import show_search

FORMATS = ("terminal", "markdown", "csv", "json", "latex")


def add_parser(sub):
    p = sub.add_parser("table", help="a table of the runs under a folder, and their loss plots; "
                                     "or of a benchmark results file",
                       description="One row per run: " + FINAL_LOSS_HELP + ". Status: "
                                   + ", ".join(s.value for s in Status) + ".")
    p.add_argument("runs_dir", help="a runs folder, e.g. runs/<ablation> (searched recursively), or a "
                                    "benchmark results JSON file (unetlab bench --out, benchmarks/results/)")
    p.add_argument("--sort", metavar="COL", help="sort by this column (e.g. FID, 'final loss')")
    p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="keep rows whose column (or resolved spec value, for a dotted key) KEY equals VALUE; "
                        "repeatable, e.g. framework=torch or train.lr=0.0002")
    p.add_argument("--group", action="store_true",
                   help="one row per variant: each number's mean over seeds, its 95%% Student-t interval and n "
                        "(csv/json: separate columns '<col> mean', '<col> ci_low', '<col> ci_high', '<col> n'); "
                        "plots gain seed-mean curves with 95%% bands")
    p.add_argument("--vs", metavar="VARIANT",
                   help="compare every other variant with this baseline, per framework and grid point, paired by "
                        "seed: mean difference (other - baseline), 95%% CI, p-value (exact sign-flip test over all "
                        f"2^n sign patterns up to {EXACT_MAX_PAIRS} pairs (unetlab.stats.inference.EXACT_MAX_PAIRS), "
                        "paired t-test above; it cannot reach p < 0.05 below 6 pairs; Welch's t-test "
                        "for runs without a seed partner), Holm-adjusted p over the rows shown, verdict "
                        "(better/worse/undecided) and seeds needed at 80%% power; see docs/statistics.md")
    p.add_argument("--metric", action="append", default=[], metavar="COL",
                   help="with --vs: a column to compare (repeatable; default: final loss, the score, train img/s)")
    p.add_argument("--alpha", type=float, default=0.05, help="with --vs: the level of the verdicts (default 0.05)")
    p.add_argument("--format", choices=FORMATS, default="terminal")
    p.add_argument("--compare", metavar="COLUMN", help="framework: per variant, Jittor/PyTorch ratios of final "
                                                      "loss, train and sample img/s, peak memory and FID")
    p.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report (table, plots, "
                                                  "sample grids, each run's config and protocol)")
    p.add_argument("--plots", metavar="DIR", help="where to write PNG plots (default RUNS_DIR/plots)")
    p.add_argument("--no-plots", action="store_true", help="write no plots")
    p.add_argument("--search", action="store_true", help="a search's studies: best trials, parameter importances, "
                                                         "and plots (history, importance, slice, curves)")
    p.add_argument("--storage", metavar="URL", help="with --search: the studies' database, when not the journal "
                                                    "file RUNS/<ablation>/search.journal")
    return p


def show_table(root: Path, filters=(), sort=None, group=False, fmt="terminal", plots: Path | None = None):
    """Print the table of the runs under ``root``; write plots of its runs into ``plots`` (None: none)."""
    df = load_table(root, list(filters))
    print(format_table(arrange(df, sort, group), fmt))
    if plots is not None:
        run_dirs = [Path(p) for p in df["path"]]
        paths = write_plots(run_dirs, plots) + write_framework_plots(run_dirs, plots)
        if group:
            paths += write_seed_plots(run_dirs, plots)
        if paths and fmt == "terminal":
            print(f"\nplots: {', '.join(str(p) for p in paths)}")
    return df


def show_bench_table(path: Path, filters=(), sort=None, fmt="terminal"):
    """Print the rows of a benchmark results file."""
    df = load_bench_table(path, list(filters))
    print(format_table(arrange(df, sort), fmt))
    return df


def run(args):
    root = Path(args.runs_dir)
    if root.is_file():
        show_bench_table(root, args.filter, args.sort, args.format)
        return 0
    plots = None if args.no_plots else Path(args.plots) if args.plots else root / "plots"
    if args.search:
        show_search(root, args.storage, args.format, plots)
    elif args.compare:
        show_comparison(root, args.compare, args.filter, args.format)
    elif args.vs:
        if args.group and args.format in ("terminal", "markdown"):  # csv and json hold one table
            show_table(root, args.filter, args.sort, True, args.format, plots)
            print()
        show_vs(root, args.vs, args.metric, args.alpha, args.filter, args.format, plots)
    else:
        show_table(root, args.filter, args.sort, args.group, args.format, plots)
    if args.html:
        path = write_report(root, Path(args.html), args.filter, group=args.group, vs=args.vs,
                            metrics=args.metric, alpha=args.alpha)
        print(f"report: {path}")
    return 0


def show_vs(root: Path, baseline: str, metrics=(), alpha: float = 0.05, filters=(), fmt="terminal",
            plots: Path | None = None):
    """Print every variant's comparison with ``baseline``; write its forest plot into ``plots``."""
    df = load_table(root, list(filters))
    result = compare_to_baseline(df, baseline, list(metrics), alpha)
    print(format_vs(result, fmt, score_header(df)))
    if plots is not None and not result.empty:
        ablation = "-".join(sorted(set(result["ablation"].astype(str))))
        path = forest_plot(result, plots / f"{ablation}-vs-{baseline}.png", baseline, score_header(df))
        if path and fmt == "terminal":
            print(f"\nplot: {path}")
    return result


def show_comparison(root: Path, by: str, filters=(), fmt="terminal"):
    """Print the ``--compare BY`` table of the runs under ``root``."""
    df = compare(load_table(root, list(filters)), by)
    print(format_comparison(df, fmt))
    return df
