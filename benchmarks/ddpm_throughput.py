"""Training and sampling throughput of unetlab's ``ddpm`` preset beside the independent
plain-PyTorch network in ``reference_ddpm.py``, through one harness (``unetlab.bench.measure``:
forward, MSE, backward, clip, fused Adam; sampling = no-grad forward passes), in one run, with
the ratios printed.

    python benchmarks/ddpm_throughput.py --precision bf16 --batch-sizes 128 \\
        --cases reference:off,reference:default,unetlab:off,unetlab:default:cl --out results

A case is NET:COMPILE[:cl][:PRECISION]: NET reference or unetlab, COMPILE off or a torch.compile
mode (default, reduce-overhead, max-autotune-no-cudagraphs, ...), ``cl`` for channels-last layout,
PRECISION fp32, tf32 or bf16 (``--precision`` where a case names none).  The reference is the
DDPM network with its dropout (0.1), as the ``ddpm`` preset is: both compute the same thing.
``--lock FILE`` holds an exclusive lock on FILE around each timed part, so that other jobs that
take the same lock leave the GPU alone while it is timed; ``--repeats N`` keeps the fastest of N
timed runs (work that does not take the lock can only slow a run down).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_ddpm import Reference  # noqa: E402

from unetlab.bench import BenchCase, file_lock, measure  # noqa: E402
from unetlab.frameworks import torch_backend  # noqa: E402
from unetlab.frameworks.torch_modes import COMPILE_MODES  # noqa: E402


PRECISIONS = ("fp32", "tf32", "bf16")


def parse_case(text: str, precision: str):
    """``NET:COMPILE[:cl][:PRECISION]`` -> (net, compile mode or None, channels-last, precision)."""
    parts = text.split(":")
    net, mode, rest = parts[0], parts[1] if len(parts) > 1 else "off", parts[2:]
    layout = [p for p in rest if p == "cl"]
    named = [p for p in rest if p in PRECISIONS]
    if net not in ("reference", "unetlab") or (mode != "off" and mode not in COMPILE_MODES) \
            or len(layout) > 1 or len(named) > 1 or len(layout) + len(named) != len(rest):
        raise SystemExit(f"case {text!r}: expected NET:COMPILE[:cl][:PRECISION], NET reference|unetlab, "
                         f"COMPILE off|{'|'.join(COMPILE_MODES)}, PRECISION {'|'.join(PRECISIONS)}")
    return net, None if mode == "off" else mode, bool(layout), named[0] if named else precision


def _mode(row) -> str:
    return f"{row['precision']} {row['compile']}{'+cl' if row['channels_last'] else ''}"


def ratio_lines(rows) -> list[str]:
    """unetlab against the reference in the same mode and batch (like for like), then the two
    fastest unetlab modes of each batch against each other."""
    ok = [r for r in rows if "error" not in r]
    lines = []
    for row in ok:
        if row["net"] != "unetlab":
            continue
        for ref in ok:
            if ref["net"] == "reference" and ref["batch"] == row["batch"] and _mode(ref) == _mode(row):
                lines.append(f"unetlab / reference, {_mode(row)}, batch {row['batch']}: "
                             f"train x{row['train_img_s'] / ref['train_img_s']:.2f}, "
                             f"sampling x{row['sample_img_s'] / ref['sample_img_s']:.2f}")
    for batch in sorted({r["batch"] for r in ok}):
        mine = sorted((r for r in ok if r["net"] == "unetlab" and r["batch"] == batch),
                      key=lambda r: -r["train_img_s"])
        if len(mine) >= 2:
            lines.append(f"fastest unetlab modes, batch {batch}: {_mode(mine[0])} / {_mode(mine[1])} = "
                         f"train x{mine[0]['train_img_s'] / mine[1]['train_img_s']:.2f}")
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--precision", default="bf16", choices=PRECISIONS, help="for cases that name none")
    p.add_argument("--batch-sizes", default="128")
    p.add_argument("--cases", default="reference:off,unetlab:off")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=1, help="timed runs per case; the fastest counts")
    p.add_argument("--lock", help="exclusive lock file held while timing")
    p.add_argument("--cudnn-benchmark", action="store_true",
                   help="let cuDNN time its convolution algorithms per shape (torch.backends.cudnn.benchmark)")
    p.add_argument("--out", help="write OUT.json and OUT.md, each row as soon as it is measured")
    args = p.parse_args(argv)
    cases = [parse_case(c, args.precision) for c in args.cases.split(",")]
    torch_backend.torch.backends.cudnn.benchmark = args.cudnn_benchmark
    exclusive = file_lock(args.lock) if args.lock else None
    rows = []
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        for net, mode, channels_last, precision in cases:
            case = BenchCase("torch", precision, batch, mode, channels_last)
            model = torch_backend.prepare_model(Reference()) if net == "reference" else None
            try:
                row = {"net": net, **measure("ddpm", case, args.steps, args.warmup, model=model,
                                             exclusive=exclusive, repeats=args.repeats)}
                if args.cudnn_benchmark:
                    row["cudnn_benchmark"] = True
            except Exception as exc:  # noqa: BLE001 - an OOM or a compile failure is a result too
                row = {"net": net, "precision": precision, "batch": batch, "compile": mode or "off",
                       "channels_last": channels_last, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
            del model
            if torch_backend.torch.cuda.is_available():
                torch_backend.torch.cuda.empty_cache()
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.out:
                Path(args.out + ".json").write_text(json.dumps(rows, indent=1))
    print(tabulate(rows, headers="keys", tablefmt="github"))
    for line in ratio_lines(rows):
        print(line)
    if args.out:
        Path(args.out + ".md").write_text(tabulate(rows, headers="keys", tablefmt="github") + "\n")


if __name__ == "__main__":
    main()
