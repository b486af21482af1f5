"""``import unetlab`` changes nothing outside the process: Jittor is prepared on its first use,
so a PyTorch-only user with an unusable HOME never meets Jittor's cache."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import REPO_ROOT, tiny_model_spec

JITTOR_VARIABLES = ("nvcc_path", "use_cutt", "use_cutlass", "use_nccl", "use_mpi", "log_silent", "use_mkl")


def _run(code: str, home, *args):
    env = {k: v for k, v in os.environ.items() if k not in JITTOR_VARIABLES + ("JITTOR_HOME", "UNETLAB_QUIET")}
    env["HOME"] = str(home)
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                          cwd=REPO_ROOT, timeout=600)


def test_pytorch_use_with_an_unwritable_home(tmp_path):
    home = tmp_path / "home-is-a-file"
    home.write_text("")
    code = """
import json, os, sys
import torch
import unetlab
model = unetlab.build_model(json.loads(sys.argv[1]), "torch")
out = model(torch.zeros(1, 3, 16, 16), torch.tensor([5]))
print(json.dumps({"shape": list(out.shape), "jittor": "jittor" in sys.modules,
                  "env": sorted(k for k in os.environ if k in sys.argv[2].split(","))}))
"""
    done = _run(code, home, json.dumps(tiny_model_spec()), ",".join(JITTOR_VARIABLES))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert json.loads(done.stdout) == {"shape": [1, 3, 16, 16], "jittor": False, "env": []}


def test_jittor_use_with_an_unwritable_home_is_one_line(tmp_path):
    home = tmp_path / "home-is-a-file"
    home.write_text("")
    code = """
import json, sys
import unetlab
try:
    unetlab.build_model(json.loads(sys.argv[1]), "jittor")
except unetlab.UnetlabError as exc:
    print(exc)
"""
    done = _run(code, home, json.dumps(tiny_model_spec()))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout
    assert lines[0].startswith(f"jittor: its cache folder {home}/.cache/jittor is not usable (")
    assert lines[0].endswith("set HOME or JITTOR_HOME to a writable folder")
