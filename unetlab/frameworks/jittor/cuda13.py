"""Let Jittor 1.3.x build its CUDA code with a CUDA 13 toolkit, without editing Jittor's files.

Jittor 1.3.11 predates CUDA 13 and its core does not compile there:

* ``extern/cuda/inc/helper_cuda.h`` reads ``cudaDeviceProp::computeMode`` and ``::clockRate``,
  which CUDA 13 removed.  The overlay holds a copy that asks ``cudaDeviceGetAttribute`` instead,
  beside copies of the other headers of that folder, so that the whole folder is shadowed.
* CCCL 3 (CUB, Thrust and libcu++ in CUDA 13) needs C++17, while Jittor passes ``-std=c++14``
  to nvcc; nvcc honours the last ``-std``, so ``NVCC_APPEND_FLAGS=-std=c++17`` wins.
* CCCL 3 dropped ``cub::Max``, ``Min``, ``Sum``, ``CountingInputIterator``,
  ``TransformInputIterator`` and ``LaneId``, which Jittor's softmax, where and depthwise
  convolution kernels use.  The overlay's ``cub/cub.cuh`` includes the real header and defines
  them again.
* Jittor's ``misc/cuda_limits.h`` includes ``<npp.h>``; a toolkit without NPP finds a small
  stand-in placed after every real include folder.
* Jittor's cuDNN code is written for cuDNN 8; unless cuDNN 8 is found, ``conv_opt=1`` keeps
  cuDNN unloaded and convolutions run as Jittor's own kernels.

How the overlay comes first: ``cc_flags`` starts with ``-I<overlay>``, which Jittor places
before its own ``-I<jittor>/extern/cuda/inc`` for the core and every JIT kernel.  For its
cuBLAS/cuRAND/CUB libraries Jittor puts its folder first, so that folder is also listed in
``CPLUS_INCLUDE_PATH``: GCC (and nvcc, which preprocesses with it) ignores a ``-I`` folder that
is also a system folder, and the overlay wins there too.

:func:`configure` is what :func:`jittor_setup.prepare` calls when it prepares for CUDA; the
other functions are its parts.  Nothing here imports Jittor.
"""
from __future__ import annotations

import glob
import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

from ...errors import UnetlabError
from ...files import atomic_write_text

#: Jittor versions whose sources this overlay was written against.
SUPPORTED_JITTOR_PREFIX = "1.3."
#: The first CUDA major version Jittor 1.3 cannot build with as it comes.
FIRST_UNSUPPORTED_CUDA = 13
#: The overlay folder's name under ``<jittor home>/.cache/jittor``.
OVERLAY_DIRNAME = "unetlab-cuda13-overlay"
#: Where Jittor looks for nvcc when ``$nvcc_path`` is unset and ``nvcc`` is not on the PATH.
STANDARD_NVCC_PATHS = ("/usr/local/cuda/bin/nvcc", "/usr/bin/nvcc", "/opt/cuda/bin/nvcc")
#: Flags :func:`configure` turns off unless the user set them: the set-up Jittor was checked
#: with on CUDA 13 (oneDNN serves CPU convolutions only; cuTT, CUTLASS, NCCL and MPI would be
#: downloaded or built for CUDA 12 and older).
FLAGS_OFF = ("use_mkl", "use_cutt", "use_cutlass", "use_nccl", "use_mpi")

_REMOVED_FIELDS = {"computeMode": "cudaDevAttrComputeMode", "clockRate": "cudaDevAttrClockRate"}
_PATCH_MARK = "/* unetlab: cudaDeviceProp::computeMode and ::clockRate are gone in CUDA 13 */"
_ATTRIBUTE_FUNCTION = _PATCH_MARK + """
static inline int unetlab_device_attribute(cudaDeviceAttr attribute, int device) {
  int value = 0;
  cudaDeviceGetAttribute(&value, attribute, device);
  return value;
}
"""

CUB_SHIM = """\
#pragma once
/* unetlab CUDA 13 overlay: the real <cub/cub.cuh>, then the names CCCL 3 removed that
   Jittor 1.3 still uses (softmax, where, depthwise convolution). */
#include_next <cub/cub.cuh>

#if defined(CUB_VERSION) && CUB_VERSION >= 300000
#include <cstddef>
#include <cuda/functional>
#include <cuda/std/functional>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/iterator/transform_iterator.h>

CUB_NAMESPACE_BEGIN

using Max = ::cuda::maximum<>;
using Min = ::cuda::minimum<>;
using Sum = ::cuda::std::plus<>;

template <typename ValueT, typename OffsetT = std::ptrdiff_t>
using CountingInputIterator = THRUST_NS_QUALIFIER::counting_iterator<ValueT>;

/* CUB's order is <value, conversion, input>; Thrust's is <conversion, input, reference>:
   dereferencing yields a ValueT, as it did in CUB. */
template <typename ValueT, typename ConversionOp, typename InputIteratorT,
          typename OffsetT = std::ptrdiff_t>
using TransformInputIterator = THRUST_NS_QUALIFIER::transform_iterator<ConversionOp, InputIteratorT, ValueT>;

__device__ __forceinline__ unsigned int LaneId() {
  unsigned int lane;
  asm volatile("mov.u32 %0, %%laneid;" : "=r"(lane));
  return lane;
}

CUB_NAMESPACE_END
#endif
"""

NPP_FALLBACK = """\
#pragma once
/* unetlab CUDA 13 overlay: found only when the CUDA toolkit has no NPP headers (this folder
   is searched after the real ones).  Jittor's misc/cuda_limits.h needs only these limits. */
#define NPP_MIN_32U ( 0 )
#define NPP_MAX_32U ( 4294967295U )
#define NPP_MIN_32S (-2147483647 - 1 )
#define NPP_MAX_32S ( 2147483647 )
#define NPP_MIN_64U ( 0 )
#define NPP_MAX_64U ( 18446744073709551615ULL )
#define NPP_MIN_64S (-9223372036854775807LL - 1)
#define NPP_MAX_64S ( 9223372036854775807LL )
"""


# --- the toolkit -----------------------------------------------------------------------------

def find_nvcc(env=None, home: Path | None = None) -> str | None:
    """The nvcc Jittor would use, searched in Jittor's order; None when there is none.

    ``$nvcc_path`` first (empty means CPU only), then a toolkit Jittor installed itself under
    ``<home>/.cache/jittor/jtcuda``, then ``nvcc`` on the PATH and the usual install places.
    """
    env = os.environ if env is None else env
    if "nvcc_path" in env:
        return env["nvcc_path"] or None
    if home is not None:
        installed = sorted(glob.glob(str(home / ".cache" / "jittor" / "jtcuda" / "*" / "bin" / "nvcc")))
        if installed:
            return installed[-1]
    on_path = shutil.which("nvcc", path=env.get("PATH", os.defpath))
    if on_path:
        return on_path
    return next((p for p in STANDARD_NVCC_PATHS if os.access(p, os.X_OK)), None)


def parse_nvcc_version(text: str) -> tuple[int, ...]:
    """``(major, minor, patch)`` from ``nvcc --version`` output (``(major, minor)`` if no patch)."""
    full = re.search(r"\bV(\d+)\.(\d+)\.(\d+)\b", text)
    if full:
        return tuple(int(g) for g in full.groups())
    release = re.search(r"\brelease (\d+)\.(\d+)\b", text)
    if release:
        return tuple(int(g) for g in release.groups())
    raise UnetlabError(f"cannot read a CUDA version from nvcc --version: {text.strip()[-200:]!r}")


def nvcc_version(nvcc: str) -> tuple[int, ...]:
    """The CUDA version of ``nvcc``, from running ``nvcc --version``."""
    try:
        done = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise UnetlabError(f"cannot run {nvcc} --version: {exc}") from None
    if done.returncode:
        raise UnetlabError(f"{nvcc} --version exited with status {done.returncode}")
    return parse_nvcc_version(done.stdout)


def needs_overlay(version: tuple[int, ...]) -> bool:
    """True for the toolkits Jittor 1.3 cannot build with as it comes (CUDA 13 and later)."""
    return version[0] >= FIRST_UNSUPPORTED_CUDA


def toolkit_root(nvcc: str) -> Path:
    """The toolkit folder Jittor derives from ``nvcc``: the parent of its real ``bin`` folder."""
    return Path(os.path.realpath(nvcc)).parent.parent


def usable_nvcc(nvcc: str) -> str:
    """``nvcc``, or a standard install's nvcc of the same version when ``nvcc`` is a wrapper
    outside its toolkit (Jittor looks for headers and libraries next to the nvcc it runs)."""
    if (toolkit_root(nvcc) / "include" / "cuda_runtime.h").is_file():
        return nvcc
    version = nvcc_version(nvcc)
    for candidate in STANDARD_NVCC_PATHS:
        if (os.access(candidate, os.X_OK) and (toolkit_root(candidate) / "include" / "cuda_runtime.h").is_file()
                and nvcc_version(candidate) == version):
            return candidate
    return nvcc


def cudnn8_present(root: Path) -> bool:
    """True when cuDNN 8 (the one Jittor's cuDNN code is written for) is installed.

    ``libcudnn_ops_infer.so`` exists in cuDNN 8 only, and Jittor loads it for CUDA 11 and later.
    """
    folders = (root / "lib64", root / "targets" / "x86_64-linux" / "lib", Path("/usr/lib/x86_64-linux-gnu"),
               Path("/usr/lib"))
    return any(glob.glob(str(folder / "libcudnn_ops_infer.so*")) for folder in folders)


# --- the installed jittor ----------------------------------------------------------------------

def find_jittor_dir() -> Path:
    """The installed ``jittor`` package folder, found without importing it (importing compiles)."""
    spec = importlib.util.find_spec("jittor")
    if spec is None or not spec.submodule_search_locations:
        raise UnetlabError("jittor is not installed (no 'jittor' package on sys.path)")
    return Path(list(spec.submodule_search_locations)[0])


def jittor_version(jittor_dir: Path) -> str:
    """``__version__`` as written in ``jittor/__init__.py``."""
    try:
        text = (jittor_dir / "__init__.py").read_text(encoding="utf8")
    except OSError as exc:
        raise UnetlabError(f"cannot read {jittor_dir / '__init__.py'}: {exc.strerror}") from None
    match = re.search(r"""^__version__\s*=\s*['"]([^'"]+)['"]""", text, re.M)
    if not match:
        raise UnetlabError(f"no __version__ in {jittor_dir / '__init__.py'}")
    return match.group(1)


def jittor_cuda_include(jittor_dir: Path) -> Path:
    """Jittor's own CUDA helper headers folder, checked to be the 1.3 layout the overlay expects."""
    version = jittor_version(jittor_dir)
    if not version.startswith(SUPPORTED_JITTOR_PREFIX):
        raise UnetlabError(f"jittor {version} is not covered by the CUDA 13 overlay "
                           f"(written for jittor {SUPPORTED_JITTOR_PREFIX}x)")
    include = jittor_dir / "extern" / "cuda" / "inc"
    if not (include / "helper_cuda.h").is_file():
        raise UnetlabError(f"jittor {version}: {include / 'helper_cuda.h'} not found; the header layout changed")
    return include


# --- the overlay -------------------------------------------------------------------------------

def patch_helper_cuda(text: str) -> str:
    """``helper_cuda.h`` with each read of a field CUDA 13 removed replaced by
    ``cudaDeviceGetAttribute`` on the device the struct was filled from.  Idempotent."""
    if _PATCH_MARK in text:
        return text
    uses = list(re.finditer(r"\b(\w+)\s*\.\s*(computeMode|clockRate)\b", text))
    if not uses:
        return text  # nothing left to patch (a later Jittor)
    guard = re.search(r"^#ifdef __CUDA_RUNTIME_H__[ \t]*\n", text, re.M)
    if guard is None or guard.end() > uses[0].start():
        raise UnetlabError("helper_cuda.h: no '#ifdef __CUDA_RUNTIME_H__' before the removed "
                           "cudaDeviceProp fields; the header layout changed")
    pieces, done = [], 0
    for use in uses:
        struct, field = use.groups()
        fills = list(re.finditer(rf"cudaGetDeviceProperties\(\s*&\s*{struct}\s*,\s*([^()]+?)\s*\)",
                                 text[:use.start()]))
        if not fills:
            raise UnetlabError(f"helper_cuda.h: {struct}.{field} is read before any "
                               f"cudaGetDeviceProperties(&{struct}, ...); the header layout changed")
        device = fills[-1].group(1)
        pieces += [text[done:use.start()], f"unetlab_device_attribute({_REMOVED_FIELDS[field]}, {device})"]
        done = use.end()
    patched = "".join(pieces) + text[done:]
    guard_end = guard.end()  # the patch only touched text after the guard
    patched = patched[:guard_end] + _ATTRIBUTE_FUNCTION + patched[guard_end:]
    left = re.search(r"(\.|->)\s*(computeMode|clockRate)\b", patched)
    if left:
        raise UnetlabError(f"helper_cuda.h: '{left.group(0)}' is still read after patching; "
                           "the header layout changed")
    return patched


def write_if_changed(path: Path, text: str) -> bool:
    """Write ``text`` atomically unless ``path`` already holds it (its time stamp then stays,
    so Jittor does not rebuild).  True when the file was written."""
    try:
        if path.read_text(encoding="utf8") == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    atomic_write_text(path, text)
    return True


def overlay_dir(home: Path) -> Path:
    """Where the overlay lives: ``<jittor home>/.cache/jittor/unetlab-cuda13-overlay``."""
    return home / ".cache" / "jittor" / OVERLAY_DIRNAME


def build_overlay(overlay: Path, jittor_include: Path) -> Path:
    """Write the overlay folder and return it: copies of Jittor's CUDA helper headers
    (``helper_cuda.h`` patched), ``cub/cub.cuh`` and ``fallback/npp.h``."""
    for path in (overlay, jittor_include):
        if any(c.isspace() or c in "'\":;" for c in str(path)):
            raise UnetlabError(f"the CUDA 13 overlay cannot use a path with spaces, quotes, ':' or ';': {path}")
    headers = sorted(p for p in jittor_include.iterdir() if p.suffix in (".h", ".hpp", ".cuh") and p.is_file())
    for header in headers:
        text = header.read_text(encoding="utf8")
        if header.name == "helper_cuda.h":
            text = patch_helper_cuda(text)
        write_if_changed(overlay / header.name, text)
    names = {h.name for h in headers}
    for stale in overlay.glob("*"):  # headers a previous Jittor had and this one has not
        if stale.is_file() and stale.suffix in (".h", ".hpp", ".cuh") and stale.name not in names:
            stale.unlink()
    write_if_changed(overlay / "cub" / "cub.cuh", CUB_SHIM)
    write_if_changed(overlay / "fallback" / "npp.h", NPP_FALLBACK)
    return overlay


def compat_env(overlay: Path, jittor_include: Path, nvcc: str, cudnn8: bool, env=None) -> dict[str, str]:
    """The environment variables to set before ``import jittor``, merged with ``env``'s.

    Only the variables whose value changes are returned; a value the user set is kept
    (flags they chose stay, their ``cc_flags``, include path and nvcc flags are extended).
    """
    env = os.environ if env is None else env
    out = {}
    cc_flags = env.get("cc_flags", "")
    if f"-I{overlay}" not in cc_flags.split():
        out["cc_flags"] = f"-I{overlay} {cc_flags}".strip()
    include_path = [p for p in env.get("CPLUS_INCLUDE_PATH", "").split(":") if p]
    extra = [str(p) for p in (jittor_include, overlay / "fallback") if str(p) not in include_path]
    if extra:
        out["CPLUS_INCLUDE_PATH"] = ":".join(include_path + extra)
    nvcc_flags = env.get("NVCC_APPEND_FLAGS", "")
    if not any(flag.startswith("-std=") for flag in nvcc_flags.split()):
        out["NVCC_APPEND_FLAGS"] = f"{nvcc_flags} -std=c++17".strip()
    defaults = {"nvcc_path": nvcc, **{flag: "0" for flag in FLAGS_OFF}}
    if not cudnn8:
        defaults["conv_opt"] = "1"
    out.update({k: v for k, v in defaults.items() if k not in env})
    return out


def configure(env, home: Path) -> str | None:
    """Apply the overlay to ``env`` when the toolkit Jittor would use is CUDA 13 or later.

    Returns the summary words (``CUDA 13.0 compatibility overlay``, plus ``cuDNN off`` when
    convolutions will not use cuDNN), or None when there is no nvcc, Jittor supports it, or
    Jittor is not installed (``import unetlab`` must keep working for PyTorch alone).
    """
    if importlib.util.find_spec("jittor") is None:
        return None
    nvcc = find_nvcc(env, home)
    if nvcc is None:
        return None
    version = nvcc_version(nvcc)
    if not needs_overlay(version):
        return None
    if "nvcc_path" not in env:
        nvcc = usable_nvcc(nvcc)
    jittor_include = jittor_cuda_include(find_jittor_dir())
    overlay = build_overlay(overlay_dir(home), jittor_include)
    cudnn8 = cudnn8_present(toolkit_root(nvcc))
    env.update(compat_env(overlay, jittor_include, nvcc, cudnn8, env))
    words = f"CUDA {version[0]}.{version[1]} compatibility overlay"
    return words + ", cuDNN off" if env.get("conv_opt", "0") not in ("", "0") else words
