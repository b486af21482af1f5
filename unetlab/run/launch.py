"""Commands that start unetlab's own Python processes (workers, ranks, torchrun) with the working
folder off ``sys.path``.

``python -m MODULE`` puts the folder it starts in first on ``sys.path``, so a user's file there named
like a standard module (a ``concurrent.py`` next to an ablation file) would be imported by every
worker instead of the standard one.  Python 3.11+ has ``-P`` (and ``PYTHONSAFEPATH=1``, which its
children inherit); on 3.10 the module is run through ``-c`` after dropping the folder from the path.
"""
from __future__ import annotations

import os
import sys

#: Environment variables that carry a worker's CPU thread budget (torch and the BLAS libraries read them).
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
#: Set in every child's environment, so the processes they start (torchrun's ranks) are safe too.
SAFE_PATH_ENV = "PYTHONSAFEPATH"

#: Python 3.10: run a module as ``-m`` would, with the working folder ('' for ``-c``) dropped first.
_RUN_MODULE = ("import runpy, sys; sys.path[:] = [p for p in sys.path if p not in ('', '.')]; "
               "name = sys.argv.pop(1); sys.argv[0] = name; runpy.run_module(name, run_name='__main__', "
               "alter_sys=True)")


def python_module(module: str, *args: str, python: str | None = None) -> list[str]:
    """The command ``python -m module args`` with the working folder off ``sys.path``."""
    python = python or sys.executable
    if sys.version_info >= (3, 11):
        return [python, "-P", "-m", module, *args]
    return [python, "-c", _RUN_MODULE, module, *args]


def safe_env(env: dict | None = None) -> dict:
    """``env`` (default: this process's) with ``PYTHONSAFEPATH=1`` added."""
    return {**(os.environ if env is None else env), SAFE_PATH_ENV: "1"}


def python_flags() -> str:
    """The interpreter flag that keeps the working folder off the path ('' on Python 3.10), for
    launchers that take a Python command as one string (submitit's ``python``)."""
    return "-P" if sys.version_info >= (3, 11) else ""


def cpu_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
