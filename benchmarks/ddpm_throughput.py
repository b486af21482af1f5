"""Training and sampling throughput of unetlab's ``ddpm`` preset beside the independent
plain-PyTorch network in ``reference_ddpm.py``, through one harness (``unetlab.bench.measure``:
forward, MSE, backward, clip, fused Adam; sampling = no-grad forward passes), in one run, with
the ratios printed.

    python benchmarks/ddpm_throughput.py --precision bf16 --batch-sizes 128 \\
        --cases reference:off,reference:default,unetlab:off,unetlab:default:cl --out results

A case is NET:COMPILE[:cl]: NET reference or unetlab, COMPILE off or a torch.compile mode
(default, reduce-overhead, max-autotune-no-cudagraphs, ...), ``cl`` for channels-last layout.
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


def parse_case(text: str):
    parts = text.split(":")
    net, mode = parts[0], parts[1] if len(parts) > 1 else "off"
    if net not in ("reference", "unetlab") or (mode != "off" and mode not in COMPILE_MODES) \
            or parts[2:] not in ([], ["cl"]):
        raise SystemExit(f"case {text!r}: expected NET:COMPILE[:cl], NET reference|unetlab, "
                         f"COMPILE off|{'|'.join(COMPILE_MODES)}")
    return net, None if mode == "off" else mode, parts[2:] == ["cl"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--precision", default="bf16", choices=("fp32", "tf32", "bf16"))
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
    cases = [parse_case(c) for c in args.cases.split(",")]
    torch_backend.torch.backends.cudnn.benchmark = args.cudnn_benchmark
    exclusive = file_lock(args.lock) if args.lock else None
    rows = []
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        for net, mode, channels_last in cases:
            case = BenchCase("torch", args.precision, batch, mode, channels_last)
            model = torch_backend.prepare_model(Reference()) if net == "reference" else None
            try:
                row = {"net": net, **measure("ddpm", case, args.steps, args.warmup, model=model,
                                             exclusive=exclusive, repeats=args.repeats)}
                if args.cudnn_benchmark:
                    row["cudnn_benchmark"] = True
            except Exception as exc:  # noqa: BLE001 - an OOM or a compile failure is a result too
                row = {"net": net, "precision": args.precision, "batch": batch, "compile": mode or "off",
                       "channels_last": channels_last, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
            del model
            if torch_backend.torch.cuda.is_available():
                torch_backend.torch.cuda.empty_cache()
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.out:
                Path(args.out + ".json").write_text(json.dumps(rows, indent=1))
    print(tabulate(rows, headers="keys", tablefmt="github"))
    for row in rows:  # each unetlab row against the reference rows of the same batch
        refs = [r for r in rows if r["net"] == "reference" and r["batch"] == row["batch"] and "error" not in r]
        if row["net"] != "unetlab" or "error" in row:
            continue
        for ref in refs:
            print(f"unetlab {row['compile']}{'+cl' if row['channels_last'] else ''} vs reference "
                  f"{ref['compile']}{'+cl' if ref['channels_last'] else ''}, batch {row['batch']}: "
                  f"train x{row['train_img_s'] / ref['train_img_s']:.2f}, "
                  f"sampling x{row['sample_img_s'] / ref['sample_img_s']:.2f}")
    if args.out:
        Path(args.out + ".md").write_text(tabulate(rows, headers="keys", tablefmt="github") + "\n")


if __name__ == "__main__":
    main()
