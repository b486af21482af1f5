"""Jittor's environment set-up: CPU fallback, system oneDNN, no downloads, and a real conv."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from unetlab import UnetlabError
from unetlab.frameworks.jittor import cuda13 as jittor_cuda13, setup as jittor_setup

SYSTEM_LIB = next((p for p in jittor_setup.SYSTEM_ONEDNN_LIBS if os.path.exists(p)), None)
needs_system_onednn = pytest.mark.skipif(
    SYSTEM_LIB is None or not os.path.exists(os.path.join(jittor_setup.SYSTEM_ONEDNN_INCLUDE, "dnnl.h")),
    reason="no system oneDNN (libdnnl-dev)")
needs_no_gpu = pytest.mark.skipif(jittor_setup.cuda_device_visible(), reason="an NVIDIA device is visible")

PREPARE_VARS = ("nvcc_path", "use_cutt", "use_cutlass", "use_nccl", "use_mpi", "use_mkl", "log_silent",
                "UNETLAB_JITTOR_DEVICE", "JITTOR_HOME",
                "cc_flags", "CPLUS_INCLUDE_PATH", "NVCC_APPEND_FLAGS", "conv_opt")  # the CUDA 13 overlay's


@pytest.fixture
def fresh_prepare(monkeypatch, tmp_path):
    """``prepare`` as on first use in a process, in a private Jittor home; env restored after."""
    for name in PREPARE_VARS:
        monkeypatch.setenv(name, "")  # so that a variable prepare() sets is removed again after
        monkeypatch.delenv(name)
    monkeypatch.setenv("JITTOR_HOME", str(tmp_path))
    monkeypatch.setattr(jittor_setup, "_summary", None)
    return jittor_setup.prepare


@needs_no_gpu
@needs_system_onednn
def test_prepare_on_a_cpu_machine(fresh_prepare):
    summary = fresh_prepare()
    assert summary == "jittor: cpu, oneDNN linked from the system, downloads off"
    assert os.environ["nvcc_path"] == ""
    for flag in ("use_cutt", "use_cutlass", "use_nccl", "use_mpi"):
        assert os.environ[flag] == "0", flag
    assert os.environ["log_silent"] == "1"
    assert fresh_prepare("auto") == summary  # a later call for the same device changes nothing
    with pytest.raises(UnetlabError, match="device 'cuda' requested but no NVIDIA device is visible"):
        fresh_prepare("cuda")
    jittor_setup._summary = None
    assert fresh_prepare("cpu") == "jittor: cpu, oneDNN cached, downloads off"


def test_prepare_keeps_flags_the_user_set(fresh_prepare, monkeypatch):
    monkeypatch.setenv("use_mpi", "1")
    monkeypatch.setenv("use_mkl", "0")
    assert fresh_prepare("cpu") == "jittor: cpu, oneDNN off, downloads off"
    assert os.environ["use_mpi"] == "1" and os.environ["use_cutt"] == "0"
    assert not (jittor_setup.onednn_dir()).exists()


def test_prepare_without_system_onednn_turns_mkl_off(fresh_prepare, monkeypatch, tmp_path):
    monkeypatch.setattr(jittor_setup, "SYSTEM_ONEDNN_LIBS", (str(tmp_path / "nowhere" / "libdnnl.so.2"),))
    summary = fresh_prepare("cpu")
    assert summary == ("jittor: cpu, oneDNN missing (install libdnnl-dev): slow CPU convolutions, "
                       "downloads off")
    assert os.environ["use_mkl"] == "0"


def test_prepare_rejects_bad_devices(fresh_prepare, monkeypatch):
    with pytest.raises(UnetlabError, match="jittor device must be auto, cpu or cuda, not 'gpu'"):
        fresh_prepare("gpu")
    monkeypatch.setenv("UNETLAB_JITTOR_DEVICE", "tpu")
    with pytest.raises(UnetlabError, match="not 'tpu'"):
        fresh_prepare()
    monkeypatch.setattr(jittor_setup, "cuda_device_visible", lambda: False)
    with pytest.raises(UnetlabError, match="device 'cuda' requested but no NVIDIA device is visible"):
        fresh_prepare("cuda")


def test_prepare_on_a_gpu_machine_keeps_nvcc(fresh_prepare, monkeypatch):
    monkeypatch.setattr(jittor_setup, "cuda_device_visible", lambda: True)
    # a toolkit Jittor supports, whatever this machine has (CUDA 13: see test_jittor_cuda13.py)
    monkeypatch.setattr(jittor_cuda13, "nvcc_version", lambda nvcc: (12, 4, 131))
    monkeypatch.setenv("use_mkl", "0")
    monkeypatch.setenv("nvcc_path", "/usr/local/cuda/bin/nvcc")
    assert fresh_prepare() == "jittor: cuda, oneDNN off, downloads off"
    assert os.environ["nvcc_path"] == "/usr/local/cuda/bin/nvcc"


def test_cuda_device_visible_honours_cuda_visible_devices(monkeypatch):
    monkeypatch.setattr(jittor_setup.glob, "glob",
                        lambda pattern: ["/dev/nvidia0"] if pattern.startswith("/dev/nvidia") else [])
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert jittor_setup.cuda_device_visible() is True
    for hidden in ("", "-1"):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)
        assert jittor_setup.cuda_device_visible() is False, repr(hidden)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert jittor_setup.cuda_device_visible() is True
    monkeypatch.setattr(jittor_setup.glob, "glob", lambda pattern: [])
    assert jittor_setup.cuda_device_visible() is False


@needs_system_onednn
def test_provide_system_onednn_lays_out_the_system_library(monkeypatch, tmp_path):
    monkeypatch.setenv("JITTOR_HOME", str(tmp_path))
    target = tmp_path / ".cache" / "jittor" / "mkl" / jittor_setup.ONEDNN_DIRNAME
    assert jittor_setup.onednn_dir() == target
    assert jittor_setup.provide_system_onednn() == "system"
    lib = target / "lib" / "libmkldnn.so"
    assert lib.is_symlink() and os.readlink(lib) == SYSTEM_LIB
    assert lib.resolve() == Path(SYSTEM_LIB).resolve()
    header = target / "include" / "dnnl.h"
    assert header.is_symlink() and os.readlink(header) == os.path.join(jittor_setup.SYSTEM_ONEDNN_INCLUDE, "dnnl.h")
    assert sorted(p.name for p in target.parent.iterdir()) == [jittor_setup.ONEDNN_DIRNAME]  # no temp left
    assert jittor_setup.provide_system_onednn() == "present"


def test_provide_system_onednn_reports_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("JITTOR_HOME", str(tmp_path))
    monkeypatch.setattr(jittor_setup, "SYSTEM_ONEDNN_LIBS", (str(tmp_path / "libdnnl.so.2"),))
    assert jittor_setup.provide_system_onednn() == "missing"
    assert not (tmp_path / ".cache").exists()


def test_jittor_home_from_environment_config_or_home(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("JITTOR_HOME", raising=False)
    assert jittor_setup.jittor_home() == tmp_path
    config = tmp_path / ".cache" / "jittor" / "config.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"JITTOR_HOME": str(tmp_path / "elsewhere")}))
    assert jittor_setup.jittor_home() == tmp_path / "elsewhere"
    config.write_text("{not json")
    assert jittor_setup.jittor_home() == tmp_path
    monkeypatch.setenv("JITTOR_HOME", str(tmp_path / "env"))
    assert jittor_setup.jittor_home() == tmp_path / "env"


CONV_SCRIPT = r"""
import numpy as np
import torch
from unetlab.frameworks.jittor.runtime import import_jittor

jt = import_jittor()
rng = np.random.default_rng(0)
x_np = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
w_np = rng.standard_normal((5, 4, 3, 3)).astype(np.float32) * 0.2
x = jt.array(x_np)
w = jt.array(w_np)
y = jt.nn.conv2d(x, w, padding=1)
gx, gw = jt.grad((y * y).sum(), [x, w])
jt.sync_all(True)

xt = torch.tensor(x_np, requires_grad=True)
wt = torch.tensor(w_np, requires_grad=True)
yt = torch.nn.functional.conv2d(xt, wt, padding=1)
(yt * yt).sum().backward()
np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=1e-4, atol=1e-4)
np.testing.assert_allclose(gx.numpy(), xt.grad.numpy(), rtol=1e-4, atol=1e-3)
np.testing.assert_allclose(gw.numpy(), wt.grad.numpy(), rtol=1e-4, atol=1e-3)
print("conv ok", tuple(y.shape), tuple(gw.shape), jt.flags.use_cuda)
"""


@needs_no_gpu
@pytest.mark.slow
def test_jittor_conv_forward_backward_in_a_fresh_process():
    env = {k: v for k, v in os.environ.items() if k not in PREPARE_VARS + ("UNETLAB_QUIET",)}
    done = subprocess.run([sys.executable, "-c", CONV_SCRIPT], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1] == "conv ok (2, 5, 8, 8) (5, 4, 3, 3) 0"
    summaries = [line for line in done.stderr.splitlines() if line.startswith("jittor: ")]
    assert len(summaries) == 1, done.stderr
    assert summaries[0].startswith("jittor: cpu, oneDNN ") and summaries[0].endswith(", downloads off")


@pytest.mark.slow
def test_a_killed_child_process_does_not_end_a_process_that_uses_jittor():
    """Jittor's own SIGCHLD handler quits the whole process when any child dies by a signal."""
    code = textwrap.dedent("""
        import subprocess, time
        from unetlab.frameworks.jittor.runtime import import_jittor
        import_jittor()
        child = subprocess.Popen(["sleep", "30"])
        time.sleep(0.2)
        child.kill()
        child.wait()
        time.sleep(0.5)
        print("still running")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "still running" in done.stdout, done.stderr[-2000:]
