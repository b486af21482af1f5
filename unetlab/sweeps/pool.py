"""The slots of one machine that a sweep runs its workers in: GPUs, or CPU jobs.

``--gpus auto|none|0,1,...`` and ``--jobs N`` of ``unetlab ablate`` become a :class:`Pool`:
one slot per GPU id (a run with ``resources.gpus: k`` takes k of them), or N CPU slots with
the machine's cores split between them.  Each worker learns its slots only through the
environment it is started with (:meth:`Pool.worker_env`), so CUDA never starts in the sweep
process and every worker sees exactly its own GPUs.  No servers, no framework imports.
"""
from __future__ import annotations

from dataclasses import dataclass
import os
import re
import shutil
import subprocess
import threading

from ..errors import UnetlabError
from ..run.launch import THREAD_VARS, cpu_cores  # noqa: F401 (public here too)


def visible_gpus() -> list[str]:
    """The GPU ids this process may use, without starting CUDA here.

    ``CUDA_VISIBLE_DEVICES`` when it is set (its entries as given), else the indices that
    ``nvidia-smi -L`` lists (PCI bus order, as ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` numbers them);
    none when neither says there is one.
    """
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        ids = []
        for item in given.split(","):
            item = item.strip()
            if not item or item.startswith("-"):  # CUDA ignores an invalid id and everything after it
                break
            ids.append(item)
        return ids
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        listing = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [m.group(1) for m in re.finditer(r"^GPU (\d+):", listing, re.MULTILINE)]


def parse_gpus(text: str) -> list[str] | None:
    """``--gpus``: ``auto`` (None here: decided by :func:`visible_gpus`), ``none`` ([]) or ids ``0,1,3``."""
    text = text.strip()
    if text == "auto":
        return None
    if text == "none":
        return []
    ids = [item.strip() for item in text.split(",")]
    if not all(re.fullmatch(r"\d+", i) for i in ids):
        raise UnetlabError(f"--gpus: expected auto, none or GPU ids like 0,1,3, got {text!r}")
    if len(set(ids)) != len(ids):
        raise UnetlabError(f"--gpus: GPU id given twice in {text!r}")
    return ids


def check_visible(ids: list[str]) -> None:
    """Refuse GPU ids that this machine does not show (see :func:`visible_gpus`): a worker pinned
    to a GPU that is not there would train on the CPU, or fail, without a word."""
    found = visible_gpus()
    if not found:
        raise UnetlabError(f"--gpus {','.join(ids)}: no GPU is visible here (nvidia-smi lists none and "
                           f"CUDA_VISIBLE_DEVICES names none); run on the CPU with --gpus none (and --jobs N)")
    missing = [i for i in ids if i not in found]
    if missing:
        raise UnetlabError(f"--gpus: GPU {missing[0]} is not visible here (visible GPUs: {','.join(found)})")


@dataclass(frozen=True)
class Pool:
    """Slots that runs are started in.

    ``gpus``: the GPU ids (one slot each), or empty for CPU slots; ``size``: number of slots;
    ``threads``: CPU threads given to each worker (None: the worker's own default);
    ``pin``: whether workers get ``CUDA_VISIBLE_DEVICES`` (off only when no GPU was asked for
    and none was found, which keeps today's single-run behaviour).
    """
    gpus: tuple[str, ...]
    size: int
    threads: int | None
    pin: bool

    @classmethod
    def build(cls, gpus: str | None = None, jobs: int | None = None) -> "Pool":
        """The pool for ``--gpus`` and ``--jobs`` (both optional; the default is ``--gpus auto``)."""
        if jobs is not None and jobs < 1:
            raise UnetlabError(f"--jobs: must be a positive integer, got {jobs}")
        asked = parse_gpus(gpus) if gpus is not None else None
        if jobs is not None and asked:
            raise UnetlabError("--jobs runs several runs on the CPU; give it with --gpus none, not with GPU ids")
        if jobs is None and asked is None:
            found = visible_gpus()
            if found:
                return cls(tuple(found), len(found), _split_threads(len(found)), pin=True)
            return cls((), 1, None, pin=False)  # no GPU seen: the CPU, one run at a time, as before
        if jobs is not None or asked == []:
            n = jobs or 1
            return cls((), n, _split_threads(n), pin=asked == [])
        check_visible(asked)
        return cls(tuple(asked), len(asked), _split_threads(len(asked)), pin=True)

    @property
    def on_gpus(self) -> bool:
        return bool(self.gpus)

    def slots_for(self, gpus_wanted: int) -> int:
        """Slots a run with ``resources.gpus`` of ``gpus_wanted`` takes (one on the CPU)."""
        return gpus_wanted if self.on_gpus else 1

    def describe(self) -> str:
        if self.on_gpus:
            return f"{self.size} GPU slot(s): {','.join(self.gpus)}"
        threads = f", {self.threads} thread(s) each" if self.threads else ""
        return f"{self.size} CPU job(s){threads}"

    def worker_env(self, slots: list[int]) -> dict[str, str]:
        """What a worker holding ``slots`` adds to its environment, set before it starts."""
        env: dict[str, str] = {}
        if self.pin:
            env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
            env["CUDA_VISIBLE_DEVICES"] = ",".join(self.gpus[i] for i in slots) if self.on_gpus else ""
        if self.threads is not None:
            env.update({name: str(self.threads) for name in THREAD_VARS})
        return env


def _split_threads(workers: int) -> int | None:
    """Cores per worker, at most the ``OMP_NUM_THREADS`` the sweep itself was given (None for a
    single worker: it keeps its framework's own default)."""
    if workers <= 1:
        return None
    share = max(1, cpu_cores() // workers)
    cap = os.environ.get("OMP_NUM_THREADS", "")
    return min(share, int(cap)) if cap.isdigit() and int(cap) > 0 else share


class Slots:
    """Which slots of a pool are free; thread-safe.  Slots are handed out lowest first."""

    def __init__(self, size: int):
        self._free = list(range(size))
        self._changed = threading.Condition()

    def take(self, k: int, timeout: float | None = None) -> list[int] | None:
        """Take ``k`` free slots, waiting up to ``timeout`` seconds; None when they did not free up."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._free) >= k, timeout):
                return None
            taken, self._free = self._free[:k], self._free[k:]
            return taken

    def give_back(self, slots: list[int]) -> None:
        with self._changed:
            self._free = sorted(self._free + list(slots))
            self._changed.notify_all()

    @property
    def free(self) -> int:
        with self._changed:
            return len(self._free)
