"""Where an ablation's runs execute: ``--engine local|slurm|ray`` of ``unetlab ablate``.

``local`` is the sweep of :mod:`unetlab.sweeps.sweep` (threads starting workers in the slots of a
:class:`unetlab.sweeps.pool.Pool`).  ``slurm`` (:mod:`.on_slurm`) submits the runs that are not done as
one Slurm job array through submitit; ``ray`` (:mod:`.on_ray`) runs each as a Ray task.  In both,
every task runs ``python -m unetlab.run.worker RUN_DIR``, which takes the run's lock itself, so the
runs folder must sit on storage that every node sees.  Slurm and Ray are optional extras; asking
for one that is not installed is one line saying what to install.
"""
from __future__ import annotations

from ...errors import UnetlabError
from .on_ray import RayEngine
from .on_slurm import SlurmEngine
from .requirements import NEEDS, require  # noqa: F401 (public here too)

ENGINES = ("local", "slurm", "ray")
def build(name: str = "local", slurm: list[str] = (), ray_address: str | None = None,
          detach: bool = False, cpu_only: bool = False):
    """The engine for ``--engine name`` with its options; None for ``local`` (the sweep's own).
    ``cpu_only``: the runs ask for no GPU (``--gpus none``)."""
    if name not in ENGINES:
        raise UnetlabError(f"--engine: unknown engine {name!r} (valid engines: {', '.join(ENGINES)})")
    if slurm and name != "slurm":
        raise UnetlabError("--slurm options are for --engine slurm")
    if ray_address and name != "ray":
        raise UnetlabError("--ray-address is for --engine ray")
    if detach and name != "slurm":
        raise UnetlabError("--detach needs --engine slurm (local and Ray runs end with the command)")
    if name == "local":
        return None
    require(name)
    if name == "slurm":
        return SlurmEngine(parse_options(slurm), detach=detach, cpu_only=cpu_only)
    return RayEngine(ray_address, cpu_only=cpu_only)


def parse_options(items) -> dict[str, str]:
    """``--slurm KEY=VALUE`` items as a mapping (keys with ``-`` or ``_`` alike)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key or not value.strip():
            raise UnetlabError(f"--slurm: expected KEY=VALUE (e.g. partition=gpu, time=60), got {item!r}")
        out[key] = value.strip()
    return out
