"""Common random numbers: the seed a run's random streams are drawn from.

Every random stream of a run -- the data order and flips, the timesteps, the training noise,
the framework RNG (dropout, device noise), the initial weights (per parameter name) and the
sampling noise -- is a function of the run's seed, and of nothing about its variant.  So, with
``train.crn: true`` (the default), two variants trained with the same seed see the same batches,
timesteps and noise wherever their shapes agree, and the seed-paired difference of their scores
has a smaller variance than that of two independent runs (measured in docs/statistics.md (common random numbers)).

``train.crn: false`` offsets the streams by a hash of the run's variant name (of its model
section outside an ablation), which makes the variants' randomness independent: for measuring
what the pairing buys, not for ablations.  ``config.json`` records the seed as given either way.
"""
from __future__ import annotations

import json
import zlib

import numpy as np


def stream_seed(seed: int, crn: bool = True, variant: str | None = None, spec: dict | None = None) -> int:
    """The seed the run's random streams are drawn from: ``seed`` itself when ``crn`` is on, else
    a 31-bit value drawn from ``(seed, crc32(variant))`` (the model section's JSON without a variant)."""
    if crn:
        return seed
    key = variant if variant is not None else json.dumps((spec or {}).get("model"), sort_keys=True, default=str)
    return int(np.random.SeedSequence([seed, zlib.crc32(key.encode())]).generate_state(1)[0] % (2 ** 31))
