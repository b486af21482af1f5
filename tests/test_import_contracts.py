"""The package's import structure (pyproject.toml's [tool.importlinter] contracts): layers that hold
(commands above sweeps above reports above runs above the model side above the frameworks above
the utilities) and no import cycles.  The linter is also run on a copy with a bad import, to show
that these tests fail when the structure breaks."""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

from conftest import REPO_ROOT

LINT = shutil.which("lint-imports")
pytestmark = pytest.mark.skipif(LINT is None, reason="import-linter is not installed (the test extra)")


def lint(root) -> tuple[int, str]:
    """``lint-imports`` on the package under ``root`` with ``root``'s pyproject.toml: exit status, output."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run([LINT, "--config", str(root / "pyproject.toml"), "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    return done.returncode, done.stdout + done.stderr


def contract_names() -> list[str]:
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return [c["name"] for c in config["contracts"]]


def test_there_are_contracts_for_layers_and_for_cycles():
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert {c["type"] for c in config["contracts"]} >= {"layers", "acyclic_siblings"}


def test_the_package_keeps_every_contract():
    rc, out = lint(REPO_ROOT)
    assert rc == 0, out
    kept = re.search(r"Contracts: (\d+) kept, 0 broken", out)
    assert kept and int(kept.group(1)) == len(contract_names()), out


@pytest.fixture
def copy_of_tree(tmp_path):
    """A copy of the package and its pyproject.toml, to break."""
    shutil.copytree(REPO_ROOT / "unetlab", tmp_path / "unetlab", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


@pytest.mark.parametrize("module, bad_import, broken, named", [
    # the frameworks importing the run side: an import running back up the layers
    ("frameworks/contract.py", "from ..run import rundir", "Layers", "unetlab.frameworks.contract -> unetlab.run.rundir"),
    # the lock importing the run's state, which imports the lock: a cycle
    ("run/runlock.py", "from . import rundir", "No import cycles", "No cycles are allowed in unetlab.run."),
])
def test_a_bad_import_breaks_its_contract(copy_of_tree, module, bad_import, broken, named):
    path = copy_of_tree / "unetlab" / module
    path.write_text(path.read_text() + f"\n{bad_import}  # noqa: E402,F401\n")
    rc, out = lint(copy_of_tree)
    assert rc != 0
    line = next(line for line in out.splitlines() if line.startswith(broken))
    assert line.endswith("BROKEN"), out
    assert named in out, out
