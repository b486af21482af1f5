"""The README's Python API snippet runs as written, in a fresh interpreter (so Jittor is prepared
by unetlab, as the snippet says), and computes what its comments claim in both frameworks."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

MARKER = "<!-- tests/test_readme_api.py runs this block -->"

CHECK = """
import json
import numpy as np
from unetlab.frameworks import framework_of
weights_t, weights_j = unetlab.get_weights(model), unetlab.get_weights(model_j)
print(json.dumps({
    "x": list(x.shape), "t": list(t.shape), "out": list(out.shape), "samples": list(samples.shape),
    "betas": len(betas), "frameworks": [framework_of(out), framework_of(out_j)],
    "rel_err": float(np.abs(out.numpy() - out_j.numpy()).max() / np.abs(out.numpy()).max()),
    "finite": bool(np.isfinite(samples.numpy()).all()),
    "same_weights": sorted(weights_t) == sorted(weights_j)
                    and all(np.array_equal(weights_t[k], weights_j[k]) for k in weights_t),
}))
"""


def readme_api_snippet() -> str:
    """The ```python block right after the marker comment in README.md."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(re.escape(MARKER) + r"\s*```python\n(.*?)```", text, re.S)
    assert found, f"README.md has no ```python block after {MARKER}"
    return found.group(1)


@pytest.mark.slow
def test_readme_api_snippet_runs_in_both_frameworks():
    snippet = readme_api_snippet()
    assert "jittor" in snippet and "import jittor" not in snippet.split("build_model(")[0], \
        "the snippet must let unetlab prepare Jittor before importing it"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", snippet + CHECK], capture_output=True, text=True,
                          cwd=REPO_ROOT, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["out"] == result["x"] == result["samples"]
    assert result["t"] == result["x"][:1]
    assert result["betas"] == 500
    assert result["frameworks"] == ["torch", "jittor"]
    assert result["rel_err"] <= 1e-5
    assert result["finite"] and result["same_weights"]
