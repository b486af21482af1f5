"""What every engine is: something that runs an ablation's runs and says what happened to each.

The local pool (:class:`unetlab.sweeps.sweep.LocalEngine`), Slurm (:mod:`.on_slurm`) and Ray
(:mod:`.on_ray`) all follow :class:`Engine`; each run in each of them goes through the one run
protocol of :mod:`unetlab.run.protocol` (admit under the lock, the worker, its summary, its outcome).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass
class SweepResult:
    outcome: dict = field(default_factory=dict)  # run name -> done | failed | skipped-done | elsewhere
    #                                              (| interrupted | submitted, on a cluster engine)

    @property
    def failed(self) -> list[str]:
        return [k for k, v in self.outcome.items() if v == "failed"]


class Engine(Protocol):
    """Runs an ablation's runs that are not done under ``root``; returns each run's outcome."""

    name: str

    def run(self, ablation, root: Path, progress: bool = True, echo=print) -> SweepResult:
        ...
