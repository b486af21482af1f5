"""A lock shared by every process on this machine, for tests that change machine-wide state.

pytest-xdist's groups keep such tests on one worker of one run; this lock also covers other
runs of the suite at the same time (another checkout, a second ``./dev test``): the example
plugin's ``pip install`` into the environment, and the Slurm cluster's ``/etc/slurm/slurm.conf``.
"""
from __future__ import annotations

import contextlib
import fcntl
import tempfile
from pathlib import Path


def lock_path(name: str) -> Path:
    """The lock file of ``name`` (one per machine, in the system's temp folder)."""
    return Path(tempfile.gettempdir()) / f"unetlab-tests-{name}.lock"


@contextlib.contextmanager
def machine_lock(name: str):
    """Hold the machine-wide lock ``name`` for the ``with`` block (waits while another process holds it)."""
    with open(lock_path(name), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
