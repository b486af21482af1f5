"""Prepare the environment so that ``import jittor`` works offline, once per process.

Jittor decides at import time whether to build for CUDA and downloads oneDNN and other
libraries on first use.  On machines with ``nvcc`` installed but no GPU, a plain import
crashes; offline, the oneDNN download fails.  :func:`prepare` settles both *before* the
import and returns a one-line description of what it did.
"""
from __future__ import annotations

import glob
import json
import os
from pathlib import Path
import sys

from . import cuda13 as jittor_cuda13
from ...errors import UnetlabError
from ...files import atomic_dir
from ..contract import NPROC_ENV

#: The directory name Jittor looks for under ``<home>/.cache/jittor/mkl``.
ONEDNN_DIRNAME = "dnnl_lnx_2.2.0_cpu_gomp"
#: Where Debian's ``libdnnl-dev`` puts the library and headers.
SYSTEM_ONEDNN_LIBS = ("/usr/lib/x86_64-linux-gnu/libdnnl.so.2", "/usr/lib/aarch64-linux-gnu/libdnnl.so.2")
SYSTEM_ONEDNN_INCLUDE = "/usr/include"

_summary: str | None = None
_device: str | None = None  # the device the environment was prepared for: cpu or cuda


def cuda_device_visible() -> bool:
    """True when an NVIDIA device node is present (no CUDA runtime is loaded to find out)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    if glob.glob("/dev/nvidia[0-9]*"):
        return True
    return False


def jittor_home() -> Path:
    """The folder Jittor uses as its home (``$JITTOR_HOME``, its config file, or ``~``)."""
    if os.environ.get("JITTOR_HOME"):
        return Path(os.environ["JITTOR_HOME"])
    config = Path.home() / ".cache" / "jittor" / "config.json"
    if config.is_file():
        try:
            home = json.loads(config.read_text()).get("JITTOR_HOME")
            if home:
                return Path(home)
        except (OSError, ValueError):
            pass
    return Path.home()


def onednn_dir() -> Path:
    return jittor_home() / ".cache" / "jittor" / "mkl" / ONEDNN_DIRNAME


def provide_system_onednn() -> str:
    """Lay out the system oneDNN where Jittor expects its own download.

    Returns a short word on the outcome: ``present`` (Jittor's own or an earlier layout),
    ``system`` (linked now) or ``missing`` (no system oneDNN; Jittor would download).
    """
    target = onednn_dir()
    lib = target / "lib" / "libmkldnn.so"
    if lib.exists():
        return "present"
    system_lib = next((p for p in SYSTEM_ONEDNN_LIBS if os.path.exists(p)), None)
    if system_lib is None or not os.path.exists(os.path.join(SYSTEM_ONEDNN_INCLUDE, "dnnl.h")):
        return "missing"
    with atomic_dir(target) as tmp:  # another process may build the same layout at the same time
        (tmp / "lib").mkdir()
        (tmp / "include").mkdir()
        (tmp / "lib" / "libmkldnn.so").symlink_to(system_lib)
        for header in glob.glob(os.path.join(SYSTEM_ONEDNN_INCLUDE, "dnnl*.h*")):
            (tmp / "include" / os.path.basename(header)).symlink_to(header)
        oneapi = os.path.join(SYSTEM_ONEDNN_INCLUDE, "oneapi")
        if os.path.isdir(oneapi):
            (tmp / "include" / "oneapi").symlink_to(oneapi)
    return "system"


def prepare(device: str | None = None) -> str:
    """Set Jittor's environment variables; call before the first ``import jittor``.

    ``device`` is ``auto`` (CUDA when a device is visible), ``cpu`` or ``cuda``; it defaults
    to ``$UNETLAB_JITTOR_DEVICE`` or ``auto``.  A later call for another device prepares again
    while Jittor is not imported yet, and is an error once it is.
    On CUDA, a CUDA 13 toolkit (which Jittor 1.3 cannot build with as it comes) gets the
    include overlay and settings of :mod:`jittor_cuda13`.
    Returns a one-line summary such as ``jittor: cpu, oneDNN from the system, downloads off``.
    """
    global _summary, _device
    device = os.environ.get("UNETLAB_JITTOR_DEVICE", "auto") if device is None else device
    if device not in ("auto", "cpu", "cuda"):
        raise UnetlabError(f"jittor device must be auto, cpu or cuda, not {device!r}")
    if device == "cuda" and not cuda_device_visible():
        raise UnetlabError("jittor: device 'cuda' requested but no NVIDIA device is visible")
    use_cuda = cuda_device_visible() if device == "auto" else device == "cuda"
    resolved = "cuda" if use_cuda else "cpu"
    if _summary is not None and (device == "auto" or resolved == _device):
        return _summary
    if _summary is not None and "jittor" in sys.modules:
        raise UnetlabError(f"jittor is already imported for {_device}; it cannot switch to {resolved} "
                           f"in this process (set UNETLAB_JITTOR_DEVICE={resolved} before starting)")
    env = os.environ
    if use_cuda:
        if env.get("nvcc_path") == "":
            del env["nvcc_path"]
    else:
        env["nvcc_path"] = ""
    for flag in ("use_cutt", "use_cutlass", "use_nccl"):
        env.setdefault(flag, "0")
    # Jittor's MPI only in the ranks of a data-parallel run started by mpirun (it probes for
    # mpicc and compiles its MPI ops when on); there it must be on, whatever the launcher inherited
    if env.get(NPROC_ENV) and "OMPI_COMM_WORLD_SIZE" in env:
        env["use_mpi"] = "1"
    env.setdefault("use_mpi", "0")
    env.setdefault("log_silent", "1")
    parts = ["cuda" if use_cuda else "cpu"]
    if use_cuda:
        overlay = jittor_cuda13.configure(env, jittor_home())  # None for toolkits Jittor supports
        if overlay:
            parts.append(overlay)
    if env.get("use_mkl", "1") == "1":
        onednn = provide_system_onednn()
        if onednn == "missing":
            env["use_mkl"] = "0"
            parts.append("oneDNN missing (install libdnnl-dev): slow CPU convolutions")
        else:
            parts.append({"present": "oneDNN cached", "system": "oneDNN linked from the system"}[onednn])
    else:
        parts.append("oneDNN off")
    parts.append("downloads off")
    _summary, _device = "jittor: " + ", ".join(parts), resolved
    return _summary


def prepared_device() -> str | None:
    """``cpu`` or ``cuda``: what :func:`prepare` set Jittor up for (None before it ran)."""
    return _device
