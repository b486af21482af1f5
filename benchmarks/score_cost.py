"""What a score costs beyond the distance itself: the bootstrap CI and KID/PRDC, on the demo's
256 generated digits (stand-ins: training digits with noise) against the 1,797 training digits.

Times CPU seconds of this process (``time.process_time``), the median of ``--repeats``, so a
busy shared machine inflates the figures less than wall-clock time would; run it with one
thread (``OMP_NUM_THREADS=1``), as the demo's runs score.

    OMP_NUM_THREADS=1 python benchmarks/score_cost.py [--n 256] [--repeats 5]
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def cpu_seconds(call, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        began = time.process_time()
        call()
        times.append(time.process_time() - began)
    return float(np.median(times))


def main() -> None:
    from unetlab.data import digits
    from unetlab.metrics.bootstrap import score_features
    from unetlab.metrics.scoring import dataset_space, score_record
    from unetlab.sampling import to_uint8

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256, help="generated images")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    x = digits(16)
    real = to_uint8(x)
    rng = np.random.default_rng(0)
    picked = x[rng.choice(len(x), args.n, replace=args.n > len(x))]
    fake = to_uint8(np.clip(picked + rng.normal(0, 0.2, picked.shape), -1, 1).astype(np.float32))
    space = dataset_space("digits")  # trains the network on first use (not timed below)
    score_record(fake, "dataset", train_images=real, dataset="digits")  # imports, first calls
    feats_real, feats_fake = space.extract(real), space.extract(fake)
    rows = [
        ("features of real and generated images", lambda: (space.extract(real), space.extract(fake))),
        ("FD alone", lambda: score_features(feats_real, feats_fake, 0, extra=False)),
        ("FD + bootstrap (200)", lambda: score_features(feats_real, feats_fake, 200, extra=False)),
        ("FD + KID + PRDC", lambda: score_features(feats_real, feats_fake, 0)),
        ("FD + KID + PRDC + bootstrap (200)", lambda: score_features(feats_real, feats_fake, 200)),
        ("whole record, FD-small, no CI (the old score)", lambda: score_record(
            fake, "dataset", train_images=real, dataset="digits", features="small", bootstrap=0, extra=False)),
        ("whole record, default (FD-digits, CI, KID, PRDC)", lambda: score_record(
            fake, "dataset", train_images=real, dataset="digits")),
    ]
    print(f"{args.n} generated vs {len(real)} real digits; CPU seconds, median of {args.repeats}")
    for name, call in rows:
        print(f"{cpu_seconds(call, args.repeats):8.3f}  {name}")


if __name__ == "__main__":
    main()
