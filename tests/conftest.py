"""Shared fixtures and helpers for the unetlab test suite."""
from __future__ import annotations

import importlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import suite_split
from machine_lock import machine_lock

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
EXAMPLE_PLUGIN_DIR = TESTS_DIR / "example_plugin"
EXAMPLE_PLUGIN_DIST = "unetlab-example-plugin"
DUPLICATE_PLUGIN_DIR = TESTS_DIR / "duplicate_plugin"

#: A U-Net small enough to build and run in both frameworks in well under a second.
TINY_MODEL = {
    "image_size": 16, "in_channels": 3, "out_channels": 3,
    "base_channels": 32, "channel_mult": [1, 2], "num_res_blocks": 1,
    "attn_resolutions": [8], "mid_attention": True, "dropout": 0.0,
    "norm_groups": 8, "emb_mult": 2,
}


# --- the split over pytest-xdist workers, and time limits (tests/suite_split.py) ---------------

@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    suite_split.plan(items, distributed=hasattr(config, "workerinput"))


def pytest_configure(config):
    """On an xdist worker, torch gets the worker's share of the cores."""
    if hasattr(config, "workerinput"):
        import torch

        torch.set_num_threads(suite_split.threads_per_worker(config.workerinput["workercount"]))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config):
    """``-n auto``: one worker per CPU, at most a few (PYTEST_XDIST_AUTO_NUM_WORKERS still wins)."""
    return None if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS") else suite_split.auto_workers()


# --- plain helpers -------------------------------------------------------------------------

def tiny_model_spec(**overrides) -> dict:
    """A fresh tiny model spec mapping with ``overrides`` replacing its top-level keys."""
    spec = {k: list(v) if isinstance(v, list) else v for k, v in TINY_MODEL.items()}
    spec.update(overrides)
    return spec


def pip_install(source: Path, workdir: Path, *extra_args: str) -> None:
    """``pip install --no-deps`` the package at ``source`` from a copy under ``workdir``.

    Building from a copy keeps setuptools' ``build/`` and ``*.egg-info`` out of the tree.
    """
    copy = workdir / "pip-src" / source.name
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q",
           "--disable-pip-version-check", *extra_args, str(copy)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")


def _example_plugin_current() -> bool:
    """True when the example plugin is installed and its module matches the source tree."""
    try:
        dist = importlib.metadata.distribution(EXAMPLE_PLUGIN_DIST)
    except importlib.metadata.PackageNotFoundError:
        return False
    installed = Path(dist.locate_file("unetlab_example_plugin/__init__.py"))
    source = EXAMPLE_PLUGIN_DIR / "unetlab_example_plugin" / "__init__.py"
    return installed.is_file() and installed.read_bytes() == source.read_bytes()


# --- fixtures ------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def example_plugin_installed(tmp_path_factory):
    """Make sure ``tests/example_plugin`` is pip-installed (its entry point registered).

    Installs it when it is missing or out of date (under a machine-wide lock: another worker or
    another run of the suite may be installing it too), then drops the cached registry so that
    the next ``get_registry()`` reads the entry points again.  Yields the distribution name.
    """
    from unetlab.registry import get_registry

    with machine_lock("example-plugin"):
        if not _example_plugin_current():
            pip_install(EXAMPLE_PLUGIN_DIR, tmp_path_factory.mktemp("example_plugin_build"))
            importlib.invalidate_caches()
            sys.modules.pop("unetlab_example_plugin", None)
            assert _example_plugin_current(), "pip did not install the example plugin"
    get_registry.cache_clear()
    yield EXAMPLE_PLUGIN_DIST


@pytest.fixture
def make_tiny_spec():
    """The :func:`tiny_model_spec` factory: ``make_tiny_spec(blocks={...})``."""
    return tiny_model_spec


@pytest.fixture
def duplicate_plugin_source(tmp_path):
    """A private copy of ``tests/duplicate_plugin`` (free to edit) under ``tmp_path``."""
    copy = tmp_path / DUPLICATE_PLUGIN_DIR.name
    shutil.copytree(DUPLICATE_PLUGIN_DIR, copy, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    return copy


@pytest.fixture
def pip_installer():
    """The :func:`pip_install` helper: ``pip_installer(source, workdir, "--target", dir)``."""
    return pip_install


# --- ablations, sweeps, tables and FID -----------------------------------------------------

def tiny_digits_spec(steps: int = 20, **train) -> dict:
    """A run spec that trains in about a second on a CPU: 16x16 digits, T=50, a 2-level U-Net."""
    return {
        "model": {"image_size": 16, "in_channels": 1, "out_channels": 1, "base_channels": 16,
                  "channel_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [],
                  "mid_attention": False, "dropout": 0.0, "norm_groups": 8, "emb_mult": 2},
        "diffusion": {"T": 50},
        "data": {"dataset": "digits", "limit": 256},
        "train": {"steps": steps, "batch_size": 16, "lr": 1e-3, "log_every": 5, "checkpoint_every": 10,
                  **train},
        "sample": {"steps": 5, "num_images": 8, "batch_size": 64},
    }


@pytest.fixture(scope="session", autouse=True)
def feature_net_cache(tmp_path_factory):
    """A session-private cache of trained feature networks (``UNETLAB_CACHE_DIR``, inherited by
    worker processes): the tests never read or write the user's ~/.cache/unetlab."""
    import os

    from unetlab.metrics.feature_net import CACHE_ENV, forget_loaded

    folder = tmp_path_factory.mktemp("unetlab-cache")
    old = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(folder)
    forget_loaded()
    yield folder
    forget_loaded()
    if old is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = old


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a test module (``pytestmark = pytest.mark.usefixtures("one_thread")``):
    on a shared 2-core machine, OpenMP threads that wait for each other slow tiny models down."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def wait_for(condition, proc, timeout: float = 300.0, what: str = "the sweep") -> None:
    """Poll ``condition`` until it holds; fail if ``proc`` (an ``unetlab ablate`` process with
    its output piped) ends first, or after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if proc.poll() is not None:
            pytest.fail(f"ablate ended early (rc {proc.returncode}):\n{proc.stdout.read()}")
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")
