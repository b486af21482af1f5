"""The CUDA 13 overlay for Jittor: header patch, overlay folder, environment, and when it applies.

Everything here runs without a GPU; the compile tests use the real nvcc when one is installed.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from unetlab import UnetlabError
from unetlab.frameworks.jittor import cuda13
from unetlab.frameworks.jittor import setup as jittor_setup

JITTOR_DIR = cuda13.find_jittor_dir()
JITTOR_INCLUDE = cuda13.jittor_cuda_include(JITTOR_DIR)
REAL_HELPER = (JITTOR_INCLUDE / "helper_cuda.h").read_text(encoding="utf8")

NVCC_13_0 = """nvcc: NVIDIA (R) Cuda compiler driver
Copyright (c) 2005-2025 NVIDIA Corporation
Built on Wed_Aug_20_01:58:59_PM_PDT_2025
Cuda compilation tools, release 13.0, V13.0.88
Build cuda_13.0.r13.0/compiler.36424714_0
"""
NVCC_12_4 = """nvcc: NVIDIA (R) Cuda compiler driver
Copyright (c) 2005-2024 NVIDIA Corporation
Built on Thu_Mar_28_02:18:24_PDT_2024
Cuda compilation tools, release 12.4, V12.4.131
Build cuda_12.4.r12.4/compiler.34097967_0
"""


def _real_nvcc() -> str | None:
    nvcc = cuda13.find_nvcc({"PATH": os.environ.get("PATH", os.defpath)})
    return cuda13.usable_nvcc(nvcc) if nvcc else None


REAL_NVCC = _real_nvcc()
REAL_VERSION = cuda13.nvcc_version(REAL_NVCC) if REAL_NVCC else None
needs_nvcc13 = pytest.mark.skipif(REAL_VERSION is None or REAL_VERSION[0] < 13,
                                  reason=f"needs nvcc from CUDA 13 or later (found {REAL_VERSION})")

#: What prepare() and configure() may set; each test gets them unset and restored after.
ENV_VARS = ("nvcc_path", "use_cutt", "use_cutlass", "use_nccl", "use_mpi", "use_mkl", "log_silent",
            "UNETLAB_JITTOR_DEVICE", "JITTOR_HOME", "cc_flags", "CPLUS_INCLUDE_PATH", "NVCC_APPEND_FLAGS",
            "conv_opt")


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No Jittor variables set, a private Jittor home, and everything restored after the test."""
    for name in ENV_VARS:
        monkeypatch.setenv(name, "")  # records the old value (or its absence) for the restore
        monkeypatch.delenv(name)
    monkeypatch.setenv("JITTOR_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(jittor_setup, "_summary", None)
    return tmp_path / "home"


def fake_nvcc(folder: Path, output: str, with_headers: bool = True) -> str:
    """An executable ``folder/bin/nvcc`` printing ``output`` (a toolkit with cuda_runtime.h)."""
    (folder / "bin").mkdir(parents=True)
    nvcc = folder / "bin" / "nvcc"
    nvcc.write_text(f"#!/bin/sh\ncat <<'EOF'\n{output}EOF\n")
    nvcc.chmod(0o755)
    if with_headers:
        (folder / "include").mkdir()
        (folder / "include" / "cuda_runtime.h").write_text("/* stand-in */\n")
    return str(nvcc)


# --- nvcc and the decision -----------------------------------------------------------------------

def test_parse_nvcc_version_samples():
    assert cuda13.parse_nvcc_version(NVCC_13_0) == (13, 0, 88)
    assert cuda13.parse_nvcc_version(NVCC_12_4) == (12, 4, 131)
    assert cuda13.parse_nvcc_version("Cuda compilation tools, release 11.8") == (11, 8)
    with pytest.raises(UnetlabError, match="cannot read a CUDA version"):
        cuda13.parse_nvcc_version("bash: nvcc: command not found")


@pytest.mark.skipif(REAL_NVCC is None, reason="no nvcc installed")
def test_real_nvcc_version():
    out = subprocess.run([REAL_NVCC, "--version"], capture_output=True, text=True, timeout=60).stdout
    release = tuple(int(v) for v in re.search(r"release (\d+)\.(\d+)", out).groups())
    assert REAL_VERSION[:2] == release and len(REAL_VERSION) == 3
    assert cuda13.needs_overlay(REAL_VERSION) == (release[0] >= 13)
    assert (cuda13.toolkit_root(REAL_NVCC) / "include" / "cuda_runtime.h").is_file()


def test_decision_applies_to_cuda13_and_leaves_supported_toolkits_alone():
    for version in ((13, 0, 88), (13, 1), (14, 0)):
        assert cuda13.needs_overlay(version), version
    for version in ((12, 4, 131), (12, 9), (11, 8), (10, 2, 89)):
        assert not cuda13.needs_overlay(version), version


def test_find_nvcc_follows_jittors_order(tmp_path, monkeypatch):
    monkeypatch.setattr(cuda13, "STANDARD_NVCC_PATHS", (str(tmp_path / "none" / "nvcc"),))
    on_path = fake_nvcc(tmp_path / "path", NVCC_13_0)
    home = tmp_path / "home"
    assert cuda13.find_nvcc({"nvcc_path": "/x/nvcc", "PATH": str(tmp_path / "path" / "bin")}, home) == "/x/nvcc"
    assert cuda13.find_nvcc({"nvcc_path": "", "PATH": str(tmp_path / "path" / "bin")}, home) is None
    assert cuda13.find_nvcc({"PATH": str(tmp_path / "path" / "bin")}, home) == on_path
    installed = fake_nvcc(home / ".cache" / "jittor" / "jtcuda" / "cuda12.2_cudnn8_linux", NVCC_12_4)
    assert cuda13.find_nvcc({"PATH": str(tmp_path / "path" / "bin")}, home) == installed
    assert cuda13.find_nvcc({"PATH": str(tmp_path / "empty")}, tmp_path) is None


# --- helper_cuda.h -----------------------------------------------------------------------------

def test_patch_of_the_installed_helper_cuda_removes_every_removed_field():
    uses = re.findall(r"deviceProp\.(computeMode|clockRate)", REAL_HELPER)
    assert len(uses) >= 2, "the installed helper_cuda.h no longer reads the removed fields"
    patched = cuda13.patch_helper_cuda(REAL_HELPER)
    assert not re.search(r"(\.|->)\s*(computeMode|clockRate)\b", patched)
    assert patched.count("unetlab_device_attribute(cudaDevAttr") == len(uses)
    assert "cudaDeviceGetAttribute(&value, attribute, device)" in patched
    # the helper sits inside the runtime-API guard, before its first use
    guard = patched.index("#ifdef __CUDA_RUNTIME_H__")
    assert guard < patched.index("static inline int unetlab_device_attribute") < \
        patched.index("unetlab_device_attribute(cudaDevAttr")
    # each read asks the device the struct was filled from
    assert "unetlab_device_attribute(cudaDevAttrComputeMode, devID)" in patched
    assert "unetlab_device_attribute(cudaDevAttrClockRate, current_device)" in patched
    # everything else is untouched
    removed = re.sub(r"\w+\.(computeMode|clockRate)", "", REAL_HELPER)
    assert re.sub(r"unetlab_device_attribute\(cudaDevAttr\w+, \w+\)", "",
                  patched.replace(cuda13._ATTRIBUTE_FUNCTION, "")) == removed


def test_patch_is_idempotent():
    once = cuda13.patch_helper_cuda(REAL_HELPER)
    assert cuda13.patch_helper_cuda(once) == once
    assert once.count(cuda13._PATCH_MARK) == 1


def test_patch_reports_a_changed_layout_in_one_line():
    fine = "#ifdef __CUDA_RUNTIME_H__\nvoid f(int d) { cudaDeviceProp p; cudaGetDeviceProperties(&p, d); int m = p.clockRate; }\n#endif\n"
    assert "unetlab_device_attribute(cudaDevAttrClockRate, d)" in cuda13.patch_helper_cuda(fine)
    assert cuda13.patch_helper_cuda("int x;\n") == "int x;\n"  # nothing to patch: left alone
    broken = {
        "no guard": fine.replace("#ifdef __CUDA_RUNTIME_H__\n", ""),
        "no cudaGetDeviceProperties": fine.replace("cudaGetDeviceProperties(&p, d);", ""),
        "other struct": fine.replace("(&p, d)", "(&q, d)"),
    }
    for what, text in broken.items():
        with pytest.raises(UnetlabError, match="layout changed") as err:
            cuda13.patch_helper_cuda(text)
        assert "\n" not in str(err.value), what


def test_jittor_version_and_layout_are_checked(tmp_path):
    assert cuda13.jittor_version(JITTOR_DIR).startswith("1.3.")
    fake = tmp_path / "jittor"
    (fake / "extern" / "cuda" / "inc").mkdir(parents=True)
    (fake / "__init__.py").write_text("__version__ = '1.4.0.1'\n")
    with pytest.raises(UnetlabError, match=r"jittor 1\.4\.0\.1 is not covered by the CUDA 13 overlay"):
        cuda13.jittor_cuda_include(fake)
    (fake / "__init__.py").write_text('__version__ = "1.3.12.0"\n')
    with pytest.raises(UnetlabError, match="helper_cuda.h not found; the header layout changed"):
        cuda13.jittor_cuda_include(fake)
    (fake / "__init__.py").write_text("version = 1\n")
    with pytest.raises(UnetlabError, match="no __version__"):
        cuda13.jittor_version(fake)


# --- the overlay folder ------------------------------------------------------------------------

def test_overlay_layout_and_content(tmp_path):
    overlay = cuda13.build_overlay(tmp_path / "overlay", JITTOR_INCLUDE)
    headers = sorted(p.name for p in JITTOR_INCLUDE.iterdir() if p.suffix == ".h")
    files = sorted(str(p.relative_to(overlay)) for p in overlay.rglob("*") if p.is_file())
    assert files == sorted(headers + ["cub/cub.cuh", "fallback/npp.h"])
    for name in headers:  # the whole folder is shadowed; only helper_cuda.h differs
        copy = (overlay / name).read_text(encoding="utf8")
        original = (JITTOR_INCLUDE / name).read_text(encoding="utf8")
        assert copy == (cuda13.patch_helper_cuda(original) if name == "helper_cuda.h" else original), name

    cub = (overlay / "cub" / "cub.cuh").read_text()
    assert cub.startswith("#pragma once")
    guard = cub.index("#if defined(CUB_VERSION) && CUB_VERSION >= 300000")
    assert cub.index("#include_next <cub/cub.cuh>") < guard
    for name in ("using Max", "using Min", "using Sum", "using CountingInputIterator",
                 "using TransformInputIterator", "LaneId()"):
        assert cub.index(name) > guard, name
    assert cub.rstrip().endswith("#endif")

    npp = (overlay / "fallback" / "npp.h").read_text()
    for name in ("NPP_MIN_32U", "NPP_MAX_32U", "NPP_MIN_32S", "NPP_MAX_32S",
                 "NPP_MIN_64U", "NPP_MAX_64U", "NPP_MIN_64S", "NPP_MAX_64S"):
        assert re.search(rf"^#define {name} ", npp, re.M), name


def test_overlay_rebuild_leaves_unchanged_files_alone(tmp_path):
    overlay = cuda13.build_overlay(tmp_path / "overlay", JITTOR_INCLUDE)
    old = 1_000_000_000
    for path in overlay.rglob("*.*"):
        os.utime(path, (old, old))
    (overlay / "helper_string.h").write_text("edited\n")
    (overlay / "helper_gone.h").write_text("from an older jittor\n")
    cuda13.build_overlay(overlay, JITTOR_INCLUDE)
    assert (overlay / "helper_string.h").read_text() == (JITTOR_INCLUDE / "helper_string.h").read_text()
    assert not (overlay / "helper_gone.h").exists()
    touched = [p.name for p in overlay.rglob("*.*") if p.stat().st_mtime != old]
    assert touched == ["helper_string.h"]
    assert not [p for p in overlay.rglob("*") if ".tmp" in p.name]  # atomic writes left nothing


def test_overlay_refuses_paths_that_break_flags(tmp_path):
    with pytest.raises(UnetlabError, match="cannot use a path with spaces"):
        cuda13.build_overlay(tmp_path / "with space", JITTOR_INCLUDE)


# --- the environment ---------------------------------------------------------------------------

def test_env_puts_the_overlay_first_and_keeps_user_values(tmp_path):
    overlay = tmp_path / "overlay"
    user = {"cc_flags": "-O2 -DUSER", "CPLUS_INCLUDE_PATH": "/opt/inc", "NVCC_APPEND_FLAGS": "-lineinfo",
            "use_mkl": "1", "conv_opt": "0", "nvcc_path": "/mine/bin/nvcc"}
    env = cuda13.compat_env(overlay, JITTOR_INCLUDE, "/usr/local/cuda/bin/nvcc", cudnn8=False, env=user)
    assert env == {
        "cc_flags": f"-I{overlay} -O2 -DUSER",
        "CPLUS_INCLUDE_PATH": f"/opt/inc:{JITTOR_INCLUDE}:{overlay}/fallback",
        "NVCC_APPEND_FLAGS": "-lineinfo -std=c++17",
        "use_cutt": "0", "use_cutlass": "0", "use_nccl": "0", "use_mpi": "0",
    }
    assert cuda13.compat_env(overlay, JITTOR_INCLUDE, "/x", False, {**user, **env}) == {}  # applied twice

    fresh = cuda13.compat_env(overlay, JITTOR_INCLUDE, "/usr/local/cuda/bin/nvcc", cudnn8=False, env={})
    assert fresh["cc_flags"] == f"-I{overlay}"
    assert fresh["CPLUS_INCLUDE_PATH"].split(":") == [str(JITTOR_INCLUDE), f"{overlay}/fallback"]
    assert fresh["NVCC_APPEND_FLAGS"] == "-std=c++17"
    assert fresh["nvcc_path"] == "/usr/local/cuda/bin/nvcc" and fresh["conv_opt"] == "1"
    assert all(fresh[flag] == "0" for flag in cuda13.FLAGS_OFF)

    own_std = cuda13.compat_env(overlay, JITTOR_INCLUDE, "/x", cudnn8=True, env={"NVCC_APPEND_FLAGS": "-std=c++20"})
    assert "NVCC_APPEND_FLAGS" not in own_std and "conv_opt" not in own_std  # cuDNN 8: Jittor may use it


def test_configure_applies_to_cuda13_only(tmp_path):
    home = tmp_path / "home"
    env12 = {"nvcc_path": fake_nvcc(tmp_path / "cuda-12.4", NVCC_12_4)}
    assert cuda13.configure(env12, home) is None
    assert list(env12) == ["nvcc_path"] and not home.exists()

    env13 = {"nvcc_path": fake_nvcc(tmp_path / "cuda-13.0", NVCC_13_0), "use_mkl": "1"}
    assert cuda13.configure(env13, home) == "CUDA 13.0 compatibility overlay, cuDNN off"
    overlay = cuda13.overlay_dir(home)
    assert overlay == home / ".cache" / "jittor" / "unetlab-cuda13-overlay"
    assert (overlay / "helper_cuda.h").is_file() and (overlay / "cub" / "cub.cuh").is_file()
    assert env13["cc_flags"] == f"-I{overlay}" and env13["conv_opt"] == "1" and env13["use_mkl"] == "1"
    assert env13["nvcc_path"] == str(tmp_path / "cuda-13.0" / "bin" / "nvcc")

    assert cuda13.configure({"nvcc_path": ""}, home) is None  # CPU only


def test_configure_without_jittor_changes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(cuda13.importlib.util, "find_spec", lambda name: None)
    env = {"nvcc_path": fake_nvcc(tmp_path / "cuda-13.0", NVCC_13_0)}
    assert cuda13.configure(env, tmp_path) is None and list(env) == ["nvcc_path"]


def test_wrapper_nvcc_is_replaced_by_the_toolkits_own(tmp_path, monkeypatch):
    wrapper = fake_nvcc(tmp_path / "wrapper", NVCC_13_0, with_headers=False)
    real = fake_nvcc(tmp_path / "cuda-13.0", NVCC_13_0)
    other = fake_nvcc(tmp_path / "cuda-12.4", NVCC_12_4)
    monkeypatch.setattr(cuda13, "STANDARD_NVCC_PATHS", (other, real))
    assert cuda13.usable_nvcc(wrapper) == real
    assert cuda13.usable_nvcc(real) == real
    monkeypatch.setattr(cuda13, "STANDARD_NVCC_PATHS", (other,))
    assert cuda13.usable_nvcc(wrapper) == wrapper  # nothing better: Jittor gets what it found


# --- prepare() ---------------------------------------------------------------------------------

def test_prepare_for_cpu_does_not_build_the_overlay(clean_env, tmp_path, monkeypatch):
    monkeypatch.setenv("use_mkl", "0")
    monkeypatch.setenv("PATH", f"{Path(fake_nvcc(tmp_path / 'cuda-13.0', NVCC_13_0)).parent}:{os.environ['PATH']}")
    assert jittor_setup.prepare("cpu") == "jittor: cpu, oneDNN off, downloads off"
    assert not cuda13.overlay_dir(clean_env).exists()
    assert "cc_flags" not in os.environ and "NVCC_APPEND_FLAGS" not in os.environ


def test_prepare_for_cuda13_adds_the_overlay(clean_env, tmp_path, monkeypatch):
    was_imported = "jittor" in sys.modules
    monkeypatch.setattr(jittor_setup, "cuda_device_visible", lambda: True)
    monkeypatch.setenv("nvcc_path", fake_nvcc(tmp_path / "cuda-13.0", NVCC_13_0))
    summary = jittor_setup.prepare("cuda")
    assert summary == "jittor: cuda, CUDA 13.0 compatibility overlay, cuDNN off, oneDNN off, downloads off"
    overlay = cuda13.overlay_dir(clean_env)
    assert os.environ["cc_flags"].split()[0] == f"-I{overlay}"
    assert os.environ["CPLUS_INCLUDE_PATH"].split(":") == [str(JITTOR_INCLUDE), f"{overlay}/fallback"]
    assert os.environ["NVCC_APPEND_FLAGS"] == "-std=c++17" and os.environ["conv_opt"] == "1"
    for flag in cuda13.FLAGS_OFF:
        assert os.environ[flag] == "0", flag
    assert (overlay / "helper_cuda.h").is_file()
    assert ("jittor" in sys.modules) == was_imported  # prepared without importing jittor


def test_prepare_for_cuda12_leaves_jittor_alone(clean_env, tmp_path, monkeypatch):
    monkeypatch.setattr(jittor_setup, "cuda_device_visible", lambda: True)
    monkeypatch.setenv("nvcc_path", fake_nvcc(tmp_path / "cuda-12.4", NVCC_12_4))
    monkeypatch.setenv("use_mkl", "0")
    assert jittor_setup.prepare() == "jittor: cuda, oneDNN off, downloads off"
    assert not cuda13.overlay_dir(clean_env).exists()
    assert "cc_flags" not in os.environ and "conv_opt" not in os.environ


# --- compiling with the real nvcc ----------------------------------------------------------------

CUB_USER = r"""
#include <cub/cub.cuh>
// The CUB names CCCL 3 removed, used the way Jittor 1.3 uses them.
struct NonZero {
  __host__ __device__ bool operator()(const float& v) const { return v != 0.0f; }
};
__global__ void reduce(const float* in, float* out, unsigned int* lanes) {
  typedef cub::BlockReduce<float, 128> BlockReduce;
  __shared__ typename BlockReduce::TempStorage temp;
  float biggest = BlockReduce(temp).Reduce(in[threadIdx.x], cub::Max());
  __syncthreads();
  float smallest = BlockReduce(temp).Reduce(in[threadIdx.x], cub::Min());
  __syncthreads();
  float total = BlockReduce(temp).Reduce(in[threadIdx.x], cub::Sum());
  if (threadIdx.x == 0) out[0] = biggest + smallest + total;
  lanes[threadIdx.x] = cub::LaneId();
}
size_t where_bytes(const float* cond, int* out, int* count, int n) {
  cub::CountingInputIterator<int> counting(0);
  cub::TransformInputIterator<bool, NonZero, const float*> flags(cond, NonZero());
  size_t bytes = 0;
  cub::DeviceSelect::Flagged(nullptr, bytes, counting, flags, out, count, n);
  return bytes;
}
"""


@needs_nvcc13
@pytest.mark.slow
def test_cub_shim_compiles_with_nvcc(tmp_path):
    overlay = cuda13.build_overlay(tmp_path / "overlay", JITTOR_INCLUDE)
    (tmp_path / "uses_cub.cu").write_text(CUB_USER)
    cmd = [REAL_NVCC, "-std=c++17", f"-I{overlay}", "-x", "cu", "-c", "uses_cub.cu", "-o", "uses_cub.o"]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "uses_cub.o").stat().st_size > 0


@needs_nvcc13
@pytest.mark.slow
def test_jittors_helper_cuda_compiles_with_the_overlay_environment(tmp_path):
    """Jittor's own extern/cuda/src/helper_cuda.cc, with ``-std=c++14`` and its folder listed
    before the overlay (the order Jittor uses for its cuBLAS/cuRAND/CUB libraries)."""
    overlay = cuda13.build_overlay(tmp_path / "overlay", JITTOR_INCLUDE)
    source = JITTOR_DIR / "extern" / "cuda" / "src" / "helper_cuda.cc"
    cmd = [REAL_NVCC, "-std=c++14", "-DHAS_CUDA", "-DIS_CUDA", f"-I{JITTOR_DIR / 'src'}",
           f"-I{JITTOR_INCLUDE}", f"-I{overlay}", "-x", "cu", "-c", str(source), "-o", "helper_cuda.o"]
    base = {k: v for k, v in os.environ.items() if k not in ("CPLUS_INCLUDE_PATH", "NVCC_APPEND_FLAGS")}
    extra = cuda13.compat_env(overlay, JITTOR_INCLUDE, REAL_NVCC, cudnn8=False, env=base)

    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300, env={**base, **extra})
    assert done.returncode == 0, done.stdout + done.stderr

    plain = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=base)
    assert plain.returncode != 0 and "computeMode" in plain.stdout + plain.stderr  # what the overlay fixes
