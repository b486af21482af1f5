"""The README's plugin recipe works as written: its files, pip-installed into a private folder,
give a block that builds and computes the same in PyTorch and Jittor."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, pip_install, tiny_model_spec

FILE_BLOCK = re.compile(r"```(?:python|toml)\n# (mypkg/\S+)\n(.*?)```", re.S)


def readme_plugin_files() -> dict[str, str]:
    """``{path: text}`` of every README code block whose first line names a file under mypkg/."""
    return {path: f"# {path}\n{body}" for path, body in FILE_BLOCK.findall((REPO_ROOT / "README.md").read_text())}


CHECK = """
import json, sys
import numpy as np
import unetlab
from unetlab.frameworks import backend_for
spec = json.loads(sys.argv[1])
x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
t = np.array([3, 70])
outs, names = {}, {}
for fw in ("torch", "jittor"):
    model = unetlab.build_model(spec, fw, seed=0)
    b = backend_for(fw)
    b.set_train(model, False)
    with b.no_grad():
        outs[fw] = b.numpy(model(b.tensor(x), b.tensor(t)))
    names[fw] = type(model.mid.attn_1).__module__ + "." + type(model.mid.attn_1).__qualname__
    gain = model.mid.attn_1.gain
block = unetlab.get_registry().block("attention", "gated")
err = float(np.abs(outs["torch"] - outs["jittor"]).max() / np.abs(outs["torch"]).max())
print(json.dumps({"names": names, "gain": gain, "provider": block.provider, "rel_err": err}))
"""


@pytest.mark.slow
def test_readme_plugin_recipe_installs_and_builds_in_both_frameworks(tmp_path):
    files = readme_plugin_files()
    assert sorted(files) == ["mypkg/mypkg/__init__.py", "mypkg/mypkg/blocks.py", "mypkg/pyproject.toml"]
    for path, text in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    target = tmp_path / "site"
    pip_install(tmp_path / "mypkg", tmp_path / "build", "--target", str(target))

    env = {**os.environ, "UNETLAB_QUIET": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")]))}
    spec = tiny_model_spec(blocks={"attention": {"name": "gated", "gain": 0.5}})
    done = subprocess.run([sys.executable, "-c", CHECK, json.dumps(spec)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=600)
    assert done.returncode == 0 and done.stdout.strip(), done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["names"] == {"torch": "mypkg.blocks.Gated.torch", "jittor": "mypkg.blocks.Gated.jittor"}
    assert result["gain"] == 0.5
    assert result["provider"] == "mypkg (mypkg.blocks)"
    assert result["rel_err"] <= 1e-5
