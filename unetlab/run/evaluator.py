"""FID during training: ``eval.every: N`` scores the EMA weights every N steps.

The score is the run's own protocol (``eval.fid_samples`` images from the spec's sampler,
FID against CIFAR-10 or a Frechet distance against the training images in ``eval.features``),
from the same initial noise each time, so the curve shows the weights changing and not the
noise.  Each value is a metrics record ``{"step", "fid", "fid_se", "fid_name", "elapsed",
"eval_s"}`` (``fid_se``: the bootstrap standard error over the generated samples, None with
``eval.bootstrap: 0``); records up to the last checkpoint survive a resume like the loss records.
Evaluation time is kept off the training clock.
"""
from __future__ import annotations

import time

from . import jsonfiles, rundir
from ..metrics.scoring import score_record
from ..sampling import generate, to_uint8


class PeriodicEvaluator:
    """Scores a trainer's EMA weights when ``due(step)``; does nothing without ``eval.every``."""

    def __init__(self, spec: dict, train_images):
        self.spec, self.every = spec, spec["eval"]["every"]
        self.train_images = train_images
        self._reference = None

    def due(self, step: int) -> bool:
        return bool(self.every) and step % self.every == 0

    def score(self, model, seed: int) -> dict:
        """The score record of ``model``'s samples under the run's protocol (the distance and its
        bootstrap CI; no extra metrics)."""
        ev = self.spec["eval"]
        if self._reference is None and ev["reference"] == "dataset":
            self._reference = to_uint8(self.train_images)
        images, _ = generate(model, self.spec, ev["fid_samples"], seed=seed)
        return score_record(to_uint8(images), ev["reference"], ev["fid_mode"], ev["cache_dir"], self._reference,
                            self.spec["data"]["dataset"], ev["features"], ev["bootstrap"], seed=seed, extra=False)

    def run(self, trainer, elapsed: float) -> float:
        """Score ``trainer.ema`` now, append the record; returns the seconds it took."""
        began = time.perf_counter()
        record = self.score(trainer.ema, trainer.stream_seed)
        trainer.backend.set_train(trainer.ema, False)
        seconds = time.perf_counter() - began
        jsonfiles.append_jsonl(trainer.run_dir / rundir.METRICS, [{
            "step": trainer.step, "fid": record["value"], "fid_se": record["se"], "fid_name": record["name"],
            "elapsed": elapsed, "eval_s": seconds}])
        return seconds


def score_records(records: list[dict]) -> list[dict]:
    """The records holding a score during training, in step order."""
    return [r for r in records if r.get("fid") is not None]
