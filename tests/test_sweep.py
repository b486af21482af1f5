"""Sweeps: one worker process per run, failures recorded, kills and Ctrl-C resumed, locks."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from unetlab.run import checkpoints, jsonfiles, rundir
from unetlab.sweeps.ablation import load_ablation
from unetlab.sweeps.sweep import holders, last_step, plan_rows, release, run_status, run_sweep, try_lock

from conftest import REPO_ROOT, tiny_digits_spec, wait_for

pytestmark = pytest.mark.usefixtures("one_thread")


def write_ablation(tmp_path, variants, steps=20, name="t", **train) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "base": tiny_digits_spec(steps, **train), "variants": variants}))
    return path


#: One torch thread per process: on a shared 2-core machine, OpenMP threads that wait for
#: each other slow tiny models down many times over.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def ablate(path, runs):
    cmd = [sys.executable, "-m", "unetlab.cli", "ablate", str(path), "--runs", str(runs), "--no-progress",
           "--no-plots"]
    return subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=ENV)


def finish(proc, timeout=120) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def checkpointed(run_dir: Path, proc):
    """Wait until the run has a checkpoint and its worker is recorded in the lock; the worker's pid."""
    wait_for(lambda: (run_dir / rundir.LAST).is_file() and last_step(run_dir) >= 10
             and len(holders(run_dir)) == 2, proc)
    worker = holders(run_dir)[-1]
    assert worker != proc.pid
    return worker


def records(run_dir: Path) -> list[dict]:
    return jsonfiles.read_jsonl(run_dir / rundir.METRICS)


def assert_clean_metrics(run_dir: Path, steps: int):
    got = [r["step"] for r in records(run_dir)]
    assert got == list(range(5, steps + 1, 5)), got


def uninterrupted(tmp_path, variant_train: dict, steps: int) -> list[dict]:
    """The metrics of the same run trained in one go (the worker calls this same function)."""
    from unetlab.run.trainer import train_run

    spec = tiny_digits_spec(steps)
    spec["train"].update(variant_train)
    run_dir = tmp_path / "reference" / str(len(list(tmp_path.glob("reference/*"))))
    train_run(spec, run_dir, "torch", seed=0, progress=False)
    return records(run_dir)


@pytest.mark.slow
def test_kill_and_ctrl_c_resume_to_the_uninterrupted_result(tmp_path):
    path = write_ablation(tmp_path, {"a": {}, "b": {"train.lr": 2e-3, "train.steps": 60}}, steps=50)
    runs = tmp_path / "runs"
    proc = ablate(path, runs)
    a, b = runs / "t" / "a-torch-s0", runs / "t" / "b-torch-s0"

    os.kill(checkpointed(a, proc), signal.SIGKILL)  # a crash of the first run's worker ...
    checkpointed(b, proc)                          # ... and the sweep goes on to the second run
    proc.send_signal(signal.SIGINT)                # Ctrl-C: stop cleanly
    rc, out = finish(proc)
    assert rc == 130, out
    summary_a = jsonfiles.read_json(a / rundir.SUMMARY)
    assert summary_a["status"] == "failed" and "SIGKILL" in summary_a["reason"], summary_a
    assert jsonfiles.read_json(b / rundir.SUMMARY)["status"] == "interrupted"
    assert "a-torch-s0: failed: worker died (signal SIGKILL)" in out and "rerun" in out
    assert run_status(a) == "failed" and run_status(b) == "interrupted"
    # read only now that no process writes b: Ctrl-C checkpointed it at the step it stopped at
    before = {r["step"]: r for r in records(b)}
    checkpoint_step = int(checkpoints.load_arrays(b / rundir.LAST)["step"])
    assert checkpoint_step >= max(before), (checkpoint_step, sorted(before))

    rc, out = finish(ablate(path, runs))
    assert rc == 0, out
    for run, steps in ((a, 50), (b, 60)):
        assert jsonfiles.read_json(run / rundir.SUMMARY)["status"] == "done"
        assert_clean_metrics(run, steps)
        assert (run / "worker.log").read_text().count("=== worker started") == 2
    # b resumed from its checkpoint: the records up to it are the ones written before Ctrl-C
    kept = [r for r in records(b) if r["step"] <= checkpoint_step]
    assert kept and kept == [before[r["step"]] for r in kept]
    assert sorted(p.name for p in (runs / "t").iterdir()) == ["a-torch-s0", "b-torch-s0"]
    # nothing lost or changed: the per-step losses of an uninterrupted run
    for run, train, steps in ((a, {}, 50), (b, {"lr": 2e-3}, 60)):
        want, got = uninterrupted(tmp_path, train, steps), records(run)
        assert [r["step"] for r in got] == [r["step"] for r in want]
        np.testing.assert_allclose([r["loss"] for r in got], [r["loss"] for r in want], rtol=1e-5)
    # a finished sweep is skipped entirely
    assert [r["status"] for r in plan_rows(load_ablation(path), runs / "t")] == ["done", "done"]


@pytest.mark.slow
def test_two_sweeps_run_each_run_once_and_a_diverging_run_does_not_stop_them(tmp_path):
    variants = {"a": {}, "nan": {"train.lr": 1e30, "train.grad_clip": None}, "c": {"train.lr": 2e-3}}
    path = write_ablation(tmp_path, variants, steps=10)
    runs = tmp_path / "runs"
    first, second = ablate(path, runs), ablate(path, runs)
    (rc1, out1), (rc2, out2) = finish(first), finish(second)
    assert {rc1, rc2} <= {0, 1} and 1 in (rc1, rc2), out1 + out2  # a failed run: non-zero
    run_dirs = sorted((runs / "t").iterdir())
    assert [p.name for p in run_dirs] == ["a-torch-s0", "c-torch-s0", "nan-torch-s0"]
    for run in run_dirs:
        assert (run / "worker.log").read_text().count("=== worker started") == 1, run
    for run in run_dirs[:2]:
        summary = jsonfiles.read_json(run / rundir.SUMMARY)
        assert summary["status"] == "done" and summary["gflops"] > 0 and summary["params"] > 0
        assert_clean_metrics(run, 10)
    summary = jsonfiles.read_json(runs / "t" / "nan-torch-s0" / rundir.SUMMARY)
    assert summary["status"] == "failed"
    assert summary["reason"] == "TrainingDiverged: loss became nan at step 5"
    for rc, out in ((rc1, out1), (rc2, out2)):
        if rc == 0:  # it never saw the run fail: another sweep held it until the end
            assert "nan-torch-s0: running elsewhere" in out
            continue
        assert "1 run(s) failed: nan-torch-s0" in out
        assert "failed: TrainingDiverged: loss became nan at step 5" in out  # the table's status column


def hold_in_another_process(run_dir: Path) -> subprocess.Popen:
    """A process that holds the run's lock until its stdin closes."""
    code = ("import sys; from unetlab.run import runlock; lock = runlock.lock(sys.argv[1], 'held by test'); "
            "print('locked', flush=True); sys.stdin.read(); lock.release()")
    proc = subprocess.Popen([sys.executable, "-c", code, str(run_dir)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=ENV)
    assert proc.stdout.readline().strip() == "locked"
    return proc


@pytest.mark.slow
def test_a_held_lock_means_running_elsewhere(tmp_path):
    path = write_ablation(tmp_path, {"a": {}}, steps=5)
    runs = tmp_path / "runs"
    run_dir = runs / "t" / "a-torch-s0"
    other = hold_in_another_process(run_dir)
    try:
        assert try_lock(run_dir) is None
        assert run_status(run_dir) == "running"
        rc, out = finish(ablate(path, runs))
        assert rc == 0 and "skipped" in out, out
        assert f"a-torch-s0: running elsewhere, held by test (pid {other.pid} on host " in out, out
        assert not (run_dir / rundir.CONFIG).exists()
    finally:
        other.communicate("", timeout=30)
    assert run_status(run_dir) == "new"
    assert holders(run_dir) == []
    lock = try_lock(run_dir)  # free again; re-entrant within one process
    assert try_lock(run_dir) is lock
    release(lock)
    release(lock)


def test_a_run_folder_with_another_config_is_reported_not_overwritten(tmp_path):
    path = write_ablation(tmp_path, {"a": {}}, steps=5)
    ablation = load_ablation(path)
    run_dir = tmp_path / "runs" / "t" / "a-torch-s0"
    config = ablation.runs[0].config()
    config["spec"]["train"]["lr"] = 0.5
    jsonfiles.write_json(run_dir / rundir.CONFIG, config)
    assert [r["status"] for r in plan_rows(ablation, tmp_path / "runs" / "t")] == ["changed"]
    said = []
    result = run_sweep(ablation, tmp_path / "runs" / "t", progress=False, echo=said.append)
    assert result.failed == ["a-torch-s0"]
    assert "holds a run with a different config" in said[0]
    assert jsonfiles.read_json(run_dir / rundir.CONFIG) == config
    assert not (run_dir / "worker.log").exists()


@pytest.mark.slow
def test_a_killed_sweep_takes_its_worker_with_it_and_reruns_cleanly(tmp_path):
    path = write_ablation(tmp_path, {"a": {}}, steps=60, log_every=7, checkpoint_every=9)
    runs = tmp_path / "runs"
    proc = ablate(path, runs)
    run = runs / "t" / "a-torch-s0"
    checkpointed(run, proc)
    proc.kill()  # SIGKILL: the sweep cannot tell its worker
    proc.communicate(timeout=30)
    # rerun at once: the orphaned worker is waited for (it checkpoints and exits), not skipped
    rc, out = finish(ablate(path, runs), timeout=300)
    assert rc == 0, out
    assert "running elsewhere" not in out, out
    assert jsonfiles.read_json(run / rundir.SUMMARY)["status"] == "done"
    assert not list(run.rglob(".*.npz.*")), "temporary checkpoint files left behind"
    want, got = uninterrupted(tmp_path, {"log_every": 7, "checkpoint_every": 9}, 60), records(run)
    assert [r["step"] for r in got] == [r["step"] for r in want] == [7, 14, 21, 28, 35, 42, 49, 56, 60]
    np.testing.assert_allclose([r["loss"] for r in got], [r["loss"] for r in want], rtol=1e-5)
    np.testing.assert_allclose([r["trailing_loss"] for r in got], [r["trailing_loss"] for r in want], rtol=1e-5)
