"""A finished (or checkpointed) run folder as a model: :func:`load_run`, public as
``unetlab.load_run``, the way diffusers' ``from_pretrained`` gives a model from a folder."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import rundir
from ..errors import UnetlabError
from ..model import build_model
from ..spec import resolve_run_spec
from ..weights import set_weights
from .checkpoints import run_weights


@dataclass
class LoadedRun:
    """A run folder loaded as a model.

    ``model``: the U-Net built from the run's spec in ``framework``, holding the run's weights
    (ready for :func:`unetlab.sampling.generate`).  ``spec``: the run's resolved spec (its ``sample``
    section says how the run samples).  ``config``: the run's ``config.json`` (spec and identity:
    framework, seed, ...).  ``weights_path``: the file the weights came from.
    """

    model: object
    spec: dict
    config: dict
    framework: str
    weights_path: Path
    run_dir: Path

    @property
    def seed(self) -> int:
        """The run's training seed (also the seed its evaluation samples with)."""
        return self.config["run"].get("seed", 0)


def load_run(path, framework: str | None = None, ema: bool = True) -> LoadedRun:
    """The model of the run folder ``path`` with its weights, plus its spec and config.

    ``framework``: build the model in this framework (default: the one the run trained in; the
    weights are framework-neutral).  ``ema``: the final EMA weights (``checkpoints/ema.npz``), else
    the EMA in the resumable checkpoint of a run still training; False: the model's own last
    weights.  A folder that is not a run, or one with no weights yet, is a one-line
    :class:`~unetlab.errors.UnetlabError`.
    """
    run_dir = Path(path)
    if not run_dir.is_dir():
        raise UnetlabError(f"{run_dir}: no such run folder")
    state = rundir.read_state(run_dir)
    if state.config is None:
        raise UnetlabError(f"{run_dir}: not a run folder ({state.reason or f'no {rundir.CONFIG}'})")
    spec = resolve_run_spec(state.config["spec"])
    framework = framework or state.config["run"]["framework"]
    weights_path, arrays = run_weights(run_dir, ema)
    model = build_model(spec["model"], framework)
    set_weights(model, arrays, f"weights from {weights_path}")
    return LoadedRun(model, spec, state.config, framework, weights_path, run_dir)
