"""Processes unetlab starts (workers, ranks, cluster tasks) do not import files from the folder
they start in: a user's ``concurrent.py`` next to an ablation is not the standard ``concurrent``."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from unetlab.run import jsonfiles, rundir
from unetlab.run.launch import python_module, safe_env

from conftest import REPO_ROOT, tiny_digits_spec

SHADOW = "from pathlib import Path\nPath({marker!r}).write_text('imported')\nraise ImportError('shadowed')\n"


def shadowing_folder(tmp_path, module: str):
    """A folder holding ``module.py`` that leaves a marker file when imported."""
    folder = tmp_path / "work"
    folder.mkdir()
    marker = tmp_path / f"{module}-imported"
    (folder / f"{module}.py").write_text(SHADOW.format(marker=str(marker)))
    return folder, marker


def child_env() -> dict:
    """This process's environment, with this tree importable from anywhere."""
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def test_a_module_started_by_unetlab_ignores_the_folders_files(tmp_path):
    folder, marker = shadowing_folder(tmp_path, "json")
    plain = subprocess.run([sys.executable, "-m", "json.tool"], cwd=folder, input="{}", capture_output=True,
                           text=True, env=child_env())
    assert plain.returncode != 0 and marker.exists()  # what a plain ``python -m`` does
    marker.unlink()
    safe = subprocess.run(python_module("json.tool"), cwd=folder, input='{"a": 1}', capture_output=True,
                          text=True, env=safe_env(child_env()))
    assert safe.returncode == 0, safe.stderr
    assert '"a": 1' in safe.stdout
    assert not marker.exists()


def test_safe_env_keeps_the_environment_and_adds_the_flag():
    env = safe_env({"A": "1"})
    assert env == {"A": "1", "PYTHONSAFEPATH": "1"}


@pytest.mark.slow
def test_a_sweep_started_next_to_a_concurrent_py_does_not_import_it(tmp_path):
    folder, marker = shadowing_folder(tmp_path, "concurrent")
    (folder / "a.yaml").write_text(yaml.safe_dump({"name": "a", "base": tiny_digits_spec(4),
                                                   "variants": {"only": {}}}))
    # the parent is started the way the ``unetlab`` script starts it (its folder is not on the path)
    parent = [sys.executable, "-c", "import sys; sys.path.pop(0); from unetlab.cli import main; sys.exit(main())"]
    done = subprocess.run([*parent, "ablate", "a.yaml", "--runs", "runs", "--no-progress", "--no-plots"],
                          cwd=folder, capture_output=True, text=True, env=child_env(), timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    run = folder / "runs" / "a" / "only-torch-s0"
    assert jsonfiles.read_json(run / rundir.SUMMARY)["status"] == "done"
    assert not marker.exists(), (run / "worker.log").read_text()
