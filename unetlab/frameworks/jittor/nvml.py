"""GPU memory a process holds, as the driver sees it (NVML), whatever framework allocated it."""
from __future__ import annotations

import os


def process_gpu_bytes(pid: int | None = None, device: int = 0) -> int | None:
    """Bytes of GPU ``device`` held by process ``pid`` (this one by default); None without NVML
    (``pip install unetlab[gpu]``), without a GPU, or when the process holds nothing there."""
    pid = os.getpid() if pid is None else pid
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(device)
        for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if proc.pid == pid:
                return int(proc.usedGpuMemory)
    except Exception:  # noqa: BLE001 - no NVML, no reading
        return None
    return None
