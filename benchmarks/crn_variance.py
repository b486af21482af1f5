"""How much common random numbers shrink the variance of a seed-paired difference.

Trains 2 variants (attention at 8x8 and in the middle, against none) of the demo's tiny digits
U-Net for N seeds in PyTorch, twice: with ``train.crn: true`` (the default: the variants of one
seed share data order, timesteps and noise) and with ``train.crn: false`` (each variant's
randomness offset by a hash of its name: independent runs).  For the final loss and the FD-small
score it prints, per arm, the correlation of the two variants across seeds, var(paired
difference) and var(A) + var(B) (the variance of the difference of independent runs), and the
ratio of the CRN arm's var(paired difference) to the independent arm's.

    OMP_NUM_THREADS=1 python benchmarks/crn_variance.py --runs /tmp/crn --seeds 8 --steps 150 --jobs 2

Runs go to RUNS/crn_paired and RUNS/crn_independent (a rerun skips the finished ones).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]


def ablation(name: str, seeds: int, steps: int, crn: bool, fid_samples: int) -> dict:
    base = yaml.safe_load((ROOT / "ablations" / "demo.yaml").read_text())["base"]
    base["train"].update({"steps": steps, "crn": crn, "checkpoint_every": steps})
    base["sample"].update({"num_images": 16, "batch_size": 64})
    base["eval"] = {"fid_samples": fid_samples, "reference": "dataset", "every": None}
    return {"name": name, "base": base, "seeds": list(range(seeds)), "frameworks": ["torch"],
            "variants": {"attn8": {}, "no_attn": {"model.attn_resolutions": [], "model.mid_attention": False}}}


def run_arm(spec: dict, runs: Path, jobs: int) -> dict:
    """Run the ablation; return {metric: (values of attn8, values of no_attn)} in seed order."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(spec, f)
    subprocess.run([sys.executable, "-m", "unetlab.cli", "ablate", f.name, "--runs", str(runs), "--jobs", str(jobs),
                    "--no-progress", "--no-plots"], check=True, stdout=subprocess.DEVNULL)
    from unetlab.run.rundir import read_json

    out = {"final_loss": ([], []), "score": ([], [])}
    for seed in spec["seeds"]:
        for i, variant in enumerate(spec["variants"]):
            summary = read_json(runs / spec["name"] / f"{variant}-torch-s{seed}" / "summary.json")
            out["final_loss"][i].append(summary["final_loss"])
            out["score"][i].append(summary["fid"]["value"])
    return {k: (np.array(a), np.array(b)) for k, (a, b) in out.items()}


def figures(a: np.ndarray, b: np.ndarray) -> dict:
    d = a - b
    return {"corr": float(np.corrcoef(a, b)[0, 1]), "var_paired": float(d.var(ddof=1)),
            "var_a_plus_b": float(a.var(ddof=1) + b.var(ddof=1)), "mean_diff": float(d.mean())}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", default="runs", help="runs folder (default: runs)")
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--fid-samples", type=int, default=256)
    p.add_argument("--jobs", type=int, default=2)
    args = p.parse_args(argv)
    runs = Path(args.runs)
    arms = {}
    for crn, name in ((True, "crn_paired"), (False, "crn_independent")):
        arms[name] = run_arm(ablation(name, args.seeds, args.steps, crn, args.fid_samples), runs, args.jobs)
    print(f"{args.seeds} seeds x 2 variants (attn8, no_attn) per arm, {args.steps} steps, torch")
    for metric in ("final_loss", "score"):
        paired, independent = (figures(*arms[n][metric]) for n in ("crn_paired", "crn_independent"))
        for name, f in (("crn_paired", paired), ("crn_independent", independent)):
            print(f"{metric:10s} {name:16s} corr {f['corr']:+.3f}  var(A-B) {f['var_paired']:.3g}  "
                  f"var(A)+var(B) {f['var_a_plus_b']:.3g}  mean(A-B) {f['mean_diff']:+.4g}")
        print(f"{metric:10s} ratio var(paired diff, CRN) / var(diff, independent runs): "
              f"{paired['var_paired'] / independent['var_paired']:.3f}  "
              f"(within the CRN arm, var(A-B) / (var(A)+var(B)): {paired['var_paired'] / paired['var_a_plus_b']:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
