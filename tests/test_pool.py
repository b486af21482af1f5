"""The GPU pool of one machine: slots, pinning, CPU jobs, multi-GPU runs, bad values."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from unetlab.run import jsonfiles, rundir
from unetlab.sweeps.ablation import load_ablation
from unetlab.cli import main
from unetlab.errors import UnetlabError
from unetlab.sweeps.pool import Pool, Slots, visible_gpus
from unetlab.sweeps.sweep import holders, run_sweep

from conftest import REPO_ROOT, tiny_digits_spec
from local_runs import run_here

pytestmark = pytest.mark.usefixtures("one_thread")

#: One thread per worker, in the pool and in the serial reference alike (bit-identical losses).
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
ENV.pop("CUDA_VISIBLE_DEVICES", None)
#: GPU ids a sweep may pin its workers to on a machine without GPUs (their torch then finds none
#: and trains on the CPU), for the tests of the pinning.
FAKE_GPUS = {**ENV, "CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5"}


def write_ablation(tmp_path, variants, steps=30, seeds=(0,), name="p") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "base": tiny_digits_spec(steps), "variants": variants,
                                    "seeds": list(seeds)}))
    return path


def ablate(path, runs, *flags, env=None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "unetlab.cli", "ablate", str(path), "--runs", str(runs), "--no-progress",
           "--no-plots", *flags]
    return subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env or ENV)


def worker_environ(pid: int) -> dict[str, str] | None:
    """The environment a live worker process was started with (None once it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def watch(proc, run_dirs, want_together: int, timeout=300.0) -> list[dict[str, dict]]:
    """Snapshots, until the sweep ends, of the environments of the workers running together
    (run name -> environ); fails unless some snapshot saw ``want_together`` of them at once."""
    seen, most = [], 0
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        assert time.monotonic() < deadline, "timed out waiting for the sweep"
        snapshot = {}
        for d in run_dirs:
            pids = holders(d)
            if len(pids) == 2:  # the sweep and its worker
                env = worker_environ(pids[-1])
                if env is not None:
                    snapshot[d.name] = env
        if snapshot:
            seen.append(snapshot)
            most = max(most, len(snapshot))
        time.sleep(0.02)
    out = proc.stdout.read()
    assert proc.returncode == 0, out
    assert most >= want_together, (most, out)
    return seen


def losses(run_dir: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in jsonfiles.read_jsonl(run_dir / rundir.METRICS)]


def logged_placement(run_dir: Path) -> str:
    lines = [ln for ln in (run_dir / "worker.log").read_text().splitlines() if ln.startswith("unetlab worker: pid")]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.slow
def test_fake_gpus_pin_each_worker_to_its_own_slot_and_losses_match_a_serial_run(tmp_path):
    path = write_ablation(tmp_path, {"a": {}, "b": {"train.lr": 2e-3}}, seeds=(0, 1), steps=20)
    pooled, serial = tmp_path / "pooled", tmp_path / "serial"
    proc = ablate(path, pooled, "--gpus", "3,5", env=FAKE_GPUS)
    run_dirs = [pooled / "p" / r.name for r in load_ablation(path).runs]
    for snapshot in watch(proc, run_dirs, want_together=2):
        devices = [env.get("CUDA_VISIBLE_DEVICES") for env in snapshot.values()]
        assert all(d in ("3", "5") for d in devices), snapshot.keys()
        assert len(set(devices)) == len(devices), devices  # no two running workers share a GPU
        assert all(env.get("CUDA_DEVICE_ORDER") == "PCI_BUS_ID" for env in snapshot.values())
    for d in run_dirs:
        said = logged_placement(d)  # what the worker itself saw
        gpu = said.split("CUDA_VISIBLE_DEVICES=")[1].split(",")[0]
        assert gpu in ("3", "5") and "CUDA_DEVICE_ORDER=PCI_BUS_ID" in said, said
        assert f"on GPU {gpu} ===" in (d / "worker.log").read_text()
        assert jsonfiles.read_json(d / rundir.SUMMARY)["status"] == "done"

    run_here(load_ablation(path), serial / "p")  # one at a time, with one thread as the pooled ones had
    for d in run_dirs:
        got, want = losses(d), losses(serial / "p" / d.name)
        assert [s for s, _ in got] == [5, 10, 15, 20]
        assert got == want, d.name  # bit-identical, not merely close


@pytest.mark.slow
def test_jobs_run_together_on_the_cpu_with_the_threads_split(tmp_path):
    path = write_ablation(tmp_path, {"a": {}, "b": {"train.lr": 2e-3}, "c": {"train.lr": 5e-4}})
    runs = tmp_path / "runs"
    proc = ablate(path, runs, "--jobs", "2")
    run_dirs = [runs / "p" / r.name for r in load_ablation(path).runs]
    for snapshot in watch(proc, run_dirs, want_together=2):
        assert len(snapshot) <= 2
        for env in snapshot.values():
            assert env["OMP_NUM_THREADS"] == "1"  # min(cores // 2, the sweep's own OMP_NUM_THREADS=1)
            assert "CUDA_VISIBLE_DEVICES" not in env  # the CPU without --gpus none: left as it was
    for d in run_dirs:
        assert "OMP_NUM_THREADS=1" in logged_placement(d)
        assert jsonfiles.read_json(d / rundir.SUMMARY)["status"] == "done"


@pytest.mark.slow
def test_a_two_gpu_run_takes_two_slots(tmp_path):
    path = write_ablation(tmp_path, {"big": {"resources.gpus": 2}, "small": {}, "small2": {"train.lr": 2e-3}},
                          steps=20)
    runs = tmp_path / "runs"
    proc = ablate(path, runs, "--gpus", "0,1,2", env=FAKE_GPUS)
    run_dirs = [runs / "p" / r.name for r in load_ablation(path).runs]
    for snapshot in watch(proc, run_dirs, want_together=2):
        devices = [g for env in snapshot.values() for g in env["CUDA_VISIBLE_DEVICES"].split(",")]
        assert len(set(devices)) == len(devices) <= 3, snapshot.keys()  # never more GPUs than the pool
        if "big-torch-s0" in snapshot:
            assert len(snapshot["big-torch-s0"]["CUDA_VISIBLE_DEVICES"].split(",")) == 2
    assert "CUDA_VISIBLE_DEVICES=0,1," in logged_placement(runs / "p" / "big-torch-s0")
    # a run wanting more GPUs than the pool has is refused in one line, before anything runs
    done = subprocess.run([sys.executable, "-m", "unetlab.cli", "ablate", str(path), "--runs",
                           str(tmp_path / "other"), "--no-progress", "--gpus", "0"],
                          cwd=REPO_ROOT, capture_output=True, text=True, env=FAKE_GPUS)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "unetlab ablate: error: big-torch-s0: resources.gpus is 2 but the pool has only 1 GPU slot(s): 0 "
        "(give more with --gpus)"]
    assert not (tmp_path / "other" / "p").exists() or not any((tmp_path / "other" / "p").rglob("*.json"))


@pytest.mark.parametrize("flags, message", [
    (["--gpus", "x"], "--gpus: expected auto, none or GPU ids like 0,1,3, got 'x'"),
    (["--gpus", "0,0"], "--gpus: GPU id given twice in '0,0'"),
    (["--jobs", "0"], "argument --jobs: must be a positive integer, got 0"),
    (["--jobs", "2", "--gpus", "0,1"], "--jobs runs several runs on the CPU; give it with --gpus none"),
])
def test_bad_pool_values_are_one_line(tmp_path, capsys, flags, message):
    path = write_ablation(tmp_path, {"a": {}})
    try:
        rc = main(["ablate", str(path), "--runs", str(tmp_path / "runs"), *flags])
    except SystemExit as exc:
        rc = exc.code
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and message in lines[0], lines
    assert not (tmp_path / "runs").exists()


def test_bad_resources_in_a_spec_name_the_key(tmp_path):
    path = write_ablation(tmp_path, {"a": {"resources.gpus": 0}})
    with pytest.raises(UnetlabError, match=r"resources.gpus: must be a positive integer, got 0"):
        load_ablation(path)


def test_pool_building_and_worker_environment(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,7")
    assert visible_gpus() == ["2", "7"]
    auto = Pool.build()
    assert auto.gpus == ("2", "7") and auto.size == 2
    assert auto.worker_env([1])["CUDA_VISIBLE_DEVICES"] == "7"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == [] and Pool.build().size == 1 and Pool.build().worker_env([0]) == {}
    none = Pool.build("none")
    assert none.worker_env([0]) == {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": ""}
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert Pool.build(jobs=3).worker_env([2])["OMP_NUM_THREADS"] == "1"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert Pool.build("0,1").slots_for(2) == 2 and Pool.build(jobs=2).slots_for(2) == 1


def test_gpu_ids_that_the_machine_does_not_show_are_refused(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(UnetlabError, match=r"^--gpus 0,1: no GPU is visible here .* --gpus none"):
        Pool.build("0,1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    with pytest.raises(UnetlabError, match=r"^--gpus: GPU 2 is not visible here \(visible GPUs: 0,1\)$"):
        Pool.build("1,2")
    assert Pool.build("1").gpus == ("1",)


def test_slots_are_handed_out_without_overlap():
    slots = Slots(3)
    first, second = slots.take(2), slots.take(1)
    assert first == [0, 1] and second == [2]
    assert slots.take(1, timeout=0) is None  # all taken
    slots.give_back(first)
    assert slots.take(2, timeout=0) == [0, 1] and slots.free == 0
