"""A real single-node Slurm cluster for the tests: munge, slurmctld and slurmd on this machine.

:func:`start` writes ``/etc/slurm/slurm.conf`` (Slurm reads only that one), with every state
folder, log and pid file under a fresh folder, starts the daemons that are not running yet and
waits until ``sinfo`` shows the node idle; :meth:`SlurmCluster.stop` ends, by pid, the ones it
started and puts back the machine's own ``slurm.conf``, if it had one.  Debian's packages: slurmctld, slurmd, slurm-client, munge (``./dev test`` installs them).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

CONF = Path("/etc/slurm/slurm.conf")
MUNGE_KEY = Path("/etc/munge/munge.key")
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol")


def missing() -> str:
    """Why no cluster can be started here ('' when one can)."""
    if os.geteuid() != 0:
        return "starting a Slurm cluster needs root (Slurm's daemons run as root here)"
    absent = [d for d in DAEMONS if shutil.which(d) is None]
    if absent:
        return f"Slurm or munge is not installed (no {', '.join(absent)}): apt-get install slurmctld slurmd slurm-client munge"
    return ""


def config(state: Path) -> str:
    host = socket.gethostname().split(".")[0]
    return "\n".join([
        "ClusterName=unetlabtest", f"SlurmctldHost={host}", "AuthType=auth/munge",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "SchedulerType=sched/backfill",
        "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core", "ReturnToService=2",
        "SlurmUser=root", "SlurmdUser=root", f"StateSaveLocation={state}/ctld", f"SlurmdSpoolDir={state}/d",
        f"SlurmctldPidFile={state}/slurmctld.pid", f"SlurmdPidFile={state}/slurmd.pid",
        f"SlurmctldLogFile={state}/slurmctld.log", f"SlurmdLogFile={state}/slurmd.log",
        "JobAcctGatherType=jobacct_gather/none", "MpiDefault=none", "KillWait=30", "MinJobAge=600",
        f"NodeName={host} CPUs={os.cpu_count()} RealMemory=4000 State=UNKNOWN",
        f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP", ""])


@dataclass
class SlurmCluster:
    state: Path
    started: list = field(default_factory=list)  # pids of the daemons started here
    previous_conf: bytes | None = None  # the slurm.conf this machine had (put back at the end; none: removed)

    def stop(self) -> None:
        for pid in reversed(self.started):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
        if self.previous_conf is None:
            CONF.unlink(missing_ok=True)
        else:
            CONF.write_bytes(self.previous_conf)


def _pid(path: Path, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text().strip() if path.is_file() else ""
        if text.isdigit():
            return int(text)
        time.sleep(0.1)
    raise RuntimeError(f"no pid in {path}")


def _running(name: str) -> bool:
    return subprocess.run(["pgrep", "-x", name], capture_output=True).returncode == 0


def start(state: Path, timeout: float = 60.0) -> SlurmCluster:
    state = Path(state)
    for sub in ("ctld", "d"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    cluster = SlurmCluster(state)
    if not MUNGE_KEY.is_file():
        MUNGE_KEY.parent.mkdir(parents=True, exist_ok=True)
        MUNGE_KEY.write_bytes(os.urandom(1024))
        shutil.chown(MUNGE_KEY, "munge", "munge")
        MUNGE_KEY.chmod(0o400)
    if not _running("munged"):
        Path("/run/munge").mkdir(exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        subprocess.run(["runuser", "-u", "munge", "--", "munged"], check=True)
        cluster.started.append(_pid(Path("/run/munge/munged.pid")))
    if _running("slurmctld") or _running("slurmd"):
        raise RuntimeError("a Slurm daemon is already running on this machine")
    CONF.parent.mkdir(parents=True, exist_ok=True)
    cluster.previous_conf = CONF.read_bytes() if CONF.is_file() else None
    CONF.write_text(config(state))
    try:
        subprocess.run(["slurmctld"], check=True)
        cluster.started.append(_pid(state / "slurmctld.pid"))
        subprocess.run(["slurmd"], check=True)
        cluster.started.append(_pid(state / "slurmd.pid"))
        deadline = time.monotonic() + timeout
        while "idle" not in subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True).stdout:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Slurm node did not become idle; see {state}/*.log")
            time.sleep(0.5)
    except BaseException:
        cluster.stop()
        raise
    return cluster
