"""The training loss as recorded: log windows, the "final loss" and an honest smoothing.

Definition used everywhere (README, ``unetlab table --help``, the progress bar, ``train``'s last
line, ``summary.json``): the **final loss** of a run is the mean training loss over its last
:data:`FINAL_LOSS_STEPS` optimizer steps (over all of them when it has fewer), counted in
steps, whatever ``log_every`` is.  Each metrics record carries the same mean up to its step as
``trailing_loss``; a resumed run carries the steps before its checkpoint in the checkpoint, so
its records and its final loss equal an uninterrupted run's.
"""
from __future__ import annotations

from collections import deque

import numpy as np

#: Steps the final loss averages over.
FINAL_LOSS_STEPS = 100

FINAL_LOSS_HELP = (f"final loss: the mean training loss over the last {FINAL_LOSS_STEPS} steps (all steps "
                   f"when fewer), the same across resumes; best loss: the lowest such mean at a logged step")


class LossLog:
    """Per-step losses since the last record (the log window) and over the last N steps."""

    def __init__(self, n: int = FINAL_LOSS_STEPS):
        self.window: list[float] = []
        self.recent: deque[float] = deque(maxlen=n)

    def add(self, losses) -> None:
        """Losses of the next steps, in order."""
        self.window.extend(float(x) for x in losses)

    def close_window(self) -> tuple[float, int, float]:
        """End the log window: (its mean loss, its steps, the trailing mean over the last N steps)."""
        n, mean = len(self.window), float(np.mean(self.window))
        self.recent.extend(self.window)
        self.window = []
        return mean, n, self.trailing()

    def trailing(self) -> float:
        return float(np.mean(self.recent)) if self.recent else float("nan")

    def state(self) -> dict:
        """Arrays for the checkpoint."""
        return {"window": np.asarray(self.window, np.float64), "recent": np.asarray(self.recent, np.float64)}

    def load(self, arrays: dict) -> None:
        """Continue from :meth:`state` (absent in checkpoints of older versions: start empty)."""
        if "window" in arrays:
            self.window = [float(x) for x in arrays["window"]]
        if "recent" in arrays:
            self.recent.extend(float(x) for x in arrays["recent"])


def final_loss(records: list[dict]) -> float | None:
    """The final loss of a run from its metrics records (None when there are none)."""
    losses = [r for r in records if r.get("loss") is not None]  # not the score records
    if not losses:
        return None
    last = losses[-1]
    return last.get("trailing_loss", last["loss"])


def best_loss(records: list[dict]) -> float | None:
    """The lowest trailing mean at any logged step."""
    values = [r.get("trailing_loss", r.get("loss")) for r in records]
    values = [v for v in values if v is not None]
    return min(values) if values else None


def debiased_ema(values, beta: float = 0.9) -> np.ndarray:
    """Exponential moving average divided by ``1 - beta**k``: starts at the first value, invents no
    ramp from zero, and every point is a weighted mean of the values up to it."""
    out, s = [], 0.0
    for k, v in enumerate(values, start=1):
        s = beta * s + (1 - beta) * float(v)
        out.append(s / (1 - beta ** k))
    return np.asarray(out)
