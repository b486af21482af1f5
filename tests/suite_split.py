"""How the suite splits over pytest-xdist workers (``--dist loadgroup``) and how long a test may run.

Rules, applied to every collected test (a test's own ``xdist_group`` mark wins):

* a test that uses a fixture changing machine-wide state (:data:`MACHINE_STATE_FIXTURES`) joins
  that state's group, so one worker runs them all, one at a time;
* a test that uses a module- or class-scoped fixture defined in its test module joins its
  module's group, so the fixture is built once, on one worker (not once per worker);
* under xdist, slow tests (``@pytest.mark.slow``) and their groups are handed out first, so that
  no long test starts last (run with ``--no-loadscope-reorder``, which keeps this order);
* each worker runs torch on its share of the cores (:func:`threads_per_worker`);
* slow tests get :data:`SLOW_TIMEOUT` seconds unless they carry their own ``timeout`` mark (every
  other test: the ``timeout`` in pyproject.toml).
"""
from __future__ import annotations

import os

import pytest

#: fixture name -> xdist group: fixtures whose state is the machine's, not a temp folder's
MACHINE_STATE_FIXTURES = {
    "slurm": "slurm-cluster",                     # /etc/slurm/slurm.conf and the Slurm daemons
    "example_plugin_installed": "example-plugin",  # pip install into the environment
}

#: seconds a slow test may run (setup included) before pytest-timeout fails it
SLOW_TIMEOUT = 900

#: most workers ``-n auto`` starts: the tests size their subprocesses for a small machine
MAX_AUTO_WORKERS = 4

_SHARED_SCOPES = ("module", "class", "package")


def group_of(item: pytest.Item) -> str | None:
    """The xdist group the rules above give ``item`` (None: it may run on any worker)."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return None
    for name in info.names_closure:
        if name in MACHINE_STATE_FIXTURES:
            return MACHINE_STATE_FIXTURES[name]
    for name in info.names_closure:
        defs = info.name2fixturedefs.get(name) or ()
        if defs and defs[-1].scope in _SHARED_SCOPES and defs[-1].baseid.endswith(".py"):
            return defs[-1].baseid  # the test module's node id
    return None


def plan(items: list[pytest.Item], distributed: bool) -> None:
    """Group, time-limit and, when ``distributed`` (on an xdist worker), order the collected
    ``items`` in place (the module docstring's rules).  A plain run keeps the collection order,
    which keeps each module's tests together (its module-scoped fixtures are built once)."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            group = group_of(item)
            if group is not None:
                item.add_marker(pytest.mark.xdist_group(group))
        if item.get_closest_marker("slow") is not None and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT))
    if distributed:
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: slow ones first


def threads_per_worker(workers: int) -> int:
    """Torch threads for one of ``workers`` xdist workers: its share of this process's CPUs, at
    least one (OpenMP threads that outnumber the cores wait for each other, many times over)."""
    return max(1, len(os.sched_getaffinity(0)) // max(1, workers))


def auto_workers() -> int:
    """Workers for ``-n auto``: one per CPU this process may use, at most :data:`MAX_AUTO_WORKERS`."""
    return max(1, min(len(os.sched_getaffinity(0)), MAX_AUTO_WORKERS))
