"""Running an ablation on a cluster: locks across hosts, a real single-node Slurm cluster, Ray."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import slurm_cluster
from conftest import REPO_ROOT, tiny_digits_spec
from local_runs import run_here
from machine_lock import machine_lock
from unetlab.run import jsonfiles, rundir, runlock
from unetlab.sweeps.ablation import load_ablation
from unetlab.cli import main
from unetlab.run.rundir import Status
from unetlab.sweeps.sweep import plan_rows, run_sweep
from unetlab.reports.table import load_table

pytestmark = pytest.mark.usefixtures("one_thread")

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
ENV.pop("CUDA_VISIBLE_DEVICES", None)


def write_ablation(tmp_path, variants, steps=30, name="c") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "base": tiny_digits_spec(steps, log_every=1),
                                    "variants": variants}))
    return path


def wait_until(condition, what: str, timeout: float = 300.0, proc=None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the command ended before {what}: {proc.stdout.read()}")
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def cli(*args, env=ENV) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "unetlab.cli", *map(str, args)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def records(run_dir: Path) -> list[tuple]:
    return [(r["step"], r["loss"]) for r in jsonfiles.read_jsonl(run_dir / rundir.METRICS)]


FIGURES = ["variant", "steps", "final loss", "best loss", "status"]


# -- locks across hosts ------------------------------------------------------------------------

def other_host_holds(run_dir: Path, age_s: float = 0.0) -> None:
    """Write the record of a holder on another host whose last heartbeat was ``age_s`` ago."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / runlock.LOCK).write_text(json.dumps({"host": "node-b", "pids": [4242], "command": "unetlab worker",
                                                   "gen": 3}) + "\n")
    then = time.time() - age_s
    os.utime(run_dir / runlock.LOCK, (then, then))


def test_a_run_held_on_another_host_is_held_while_its_heartbeat_is_fresh_then_taken_over(tmp_path, monkeypatch):
    monkeypatch.setenv(runlock.STALE_ENV, "30")
    path = write_ablation(tmp_path, {"a": {}})
    ablation = load_ablation(path)
    run_dir = tmp_path / "runs" / "c" / ablation.runs[0].name
    other_host_holds(run_dir, age_s=1)
    assert runlock.try_lock(run_dir) is None
    assert rundir.run_status(run_dir) == Status.RUNNING and runlock.held_by(run_dir) == "node-b:4242"
    assert plan_rows(ablation, tmp_path / "runs" / "c")[0]["status"] == "running held (node-b:4242)"
    said = []
    result = run_sweep(ablation, tmp_path / "runs" / "c", progress=False, echo=said.append)
    assert result.outcome == {ablation.runs[0].name: "elsewhere"}
    assert "node-b" in said[0] and not (run_dir / rundir.METRICS).exists()

    other_host_holds(run_dir, age_s=31)  # its heartbeat stopped: the host or its worker is gone
    assert rundir.run_status(run_dir) == Status.NEW and runlock.held_by(run_dir) == ""
    lock = runlock.try_lock(run_dir, "unetlab ablate")
    try:
        info = runlock.holder(run_dir)
        assert (info["host"], info["pids"], info["gen"]) == (socket.gethostname(), [os.getpid()], 4)
        monkeypatch.setenv(runlock.STALE_ENV, "0.5")  # beats every 0.2 s now
        lock.release()
        lock = runlock.try_lock(run_dir, "unetlab ablate")
        before = runlock.heartbeat_age(run_dir)
        wait_until(lambda: runlock.heartbeat_age(run_dir) < before - 0.05 or runlock.heartbeat_age(run_dir) < 0.1,
                   "the holder's heartbeat is renewed", timeout=10)
    finally:
        lock.release()
    assert runlock.holder(run_dir) is None and runlock.try_lock(run_dir) is not None


def test_of_two_takers_at_once_only_one_wins(tmp_path, monkeypatch):
    monkeypatch.setenv(runlock.STALE_ENV, "30")
    run_dir = tmp_path / "r"
    other_host_holds(run_dir, age_s=60)
    (run_dir / runlock.TAKING).mkdir()  # another host is taking the stale run over right now
    assert runlock.try_lock(run_dir) is None
    (run_dir / runlock.TAKING).rmdir()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from unetlab.run import runlock; "
                               f"print('held' if runlock.try_lock({str(run_dir)!r}) else 'refused', flush=True); "
                               "time.sleep(60)"], stdout=subprocess.PIPE, text=True, env={**ENV, runlock.STALE_ENV: "30"})
    try:
        assert holder.stdout.readline().strip() == "held"
        assert runlock.try_lock(run_dir) is None  # the winner holds it; the loser sees it held
        assert runlock.holder(run_dir)["gen"] == 4
    finally:
        holder.kill()
        holder.wait()


# -- the optional extras ----------------------------------------------------------------------------

@pytest.mark.parametrize("engine, module", [("slurm", "submitit"), ("ray", "ray")])
def test_an_engine_whose_extra_is_missing_is_one_line_and_runs_nothing(tmp_path, monkeypatch, capsys, engine, module):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    path = write_ablation(tmp_path, {"a": {}})
    assert main(["ablate", str(path), "--runs", str(tmp_path / "runs"), "--engine", engine]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"unetlab ablate: error: --engine {engine} needs {module}: pip install 'unetlab[{engine}]'"
    assert not (tmp_path / "runs").exists()


def test_engine_options_are_checked_before_anything_runs(tmp_path, capsys):
    path = write_ablation(tmp_path, {"a": {}})
    for flags, message in [(["--engine", "pbs"], "--engine: unknown engine 'pbs' (valid engines: local, slurm, ray)"),
                           (["--engine", "slurm", "--slurm", "partition"], "--slurm: expected KEY=VALUE"),
                           (["--detach"], "--detach needs --engine slurm"),
                           (["--engine", "ray", "--jobs", "2"], "--jobs and --gpus ids place runs on this machine")]:
        assert main(["ablate", str(path), "--runs", str(tmp_path / "runs"), *flags]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_slurm_options_become_submitit_parameters_or_sbatch_flags():
    pytest.importorskip("submitit")
    from unetlab.sweeps.engines import parse_options
    from unetlab.sweeps.engines.on_slurm import executor_parameters

    options = parse_options(["partition=gpu", "time=60", "signal=USR1@120", "mail-type=END"])
    params = executor_parameters(options, gpus=2)
    assert (params["partition"], params["time"], params["gpus_per_task"], params["cpus_per_task"]) == ("gpu", 60, 2, 1)
    assert params["mail_type"] == "END"  # submitit's own name
    assert params["additional_parameters"] == {"requeue": True, "signal": "USR1@120"}  # sbatch flags as given
    assert "gpus_per_task" not in executor_parameters(parse_options(["gpus_per_task=0"]), gpus=1)
    assert executor_parameters({}, gpus=0)["time"] is None  # the partition's default time limit


# -- a real Slurm cluster ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    why = slurm_cluster.missing()
    if why:
        pytest.skip(why)
    with machine_lock("slurm-cluster"):  # one cluster per machine, whichever run of the suite starts it
        cluster = slurm_cluster.start(tmp_path_factory.mktemp("slurm"))
        yield cluster
        cluster.stop()


def task_state(job: str) -> str:
    return subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True).stdout


def slurm_job(root: Path, run: str) -> str:
    return jsonfiles.read_json(root / ".slurm" / "jobs.json")["runs"][run]


@pytest.mark.slow
def test_slurm_ablation_runs_each_run_once_resumes_a_requeued_task_and_ends_with_the_local_table(slurm, tmp_path):
    path = write_ablation(tmp_path, {"long": {"train.steps": 120}, "short": {"train.lr": 2e-3}})
    runs, root = tmp_path / "runs", tmp_path / "runs" / "c"
    common = ["--runs", runs, "--no-progress", "--no-plots", "--gpus", "none"]
    env = {**ENV, runlock.STALE_ENV: "20"}

    submitted = cli("ablate", path, "--engine", "slurm", "--detach", *common, env=env)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    assert "submitted 2 run(s) to Slurm as job array" in submitted.stdout and "--status" in submitted.stdout
    long_dir = root / "long-torch-s0"
    wait_until(lambda: rundir.last_step(long_dir) >= 20, "the long run has trained 20 steps")
    status = cli("ablate", path, "--status", *common, env=env)
    assert f"long-torch-s0: slurm job {slurm_job(root, 'long-torch-s0')}: running" in status.stdout, status.stdout
    assert "running @" in status.stdout
    job = slurm_job(root, "long-torch-s0")
    subprocess.run(["scontrol", "requeue", job], check=True)
    # Slurm holds a requeued task for two minutes (its begin time); let it start at once
    wait_until(lambda: "PENDING" in task_state(job), "the requeued task is pending again")
    subprocess.run(["scontrol", "update", f"jobid={job}", "starttime=now"], check=True)
    wait_until(lambda: all(rundir.run_status(root / r.name) == Status.DONE for r in load_ablation(path).runs),
               "both runs are done")

    # a third variant, run through the engine while the command waits, then the table of all three
    path = write_ablation(tmp_path, {"long": {"train.steps": 120}, "short": {"train.lr": 2e-3}, "third": {"train.lr": 5e-4}})
    waited = cli("ablate", path, "--engine", "slurm", *common, env=env)
    assert waited.returncode == 0, waited.stdout + waited.stderr
    assert "submitted 1 run(s)" in waited.stdout and "third-torch-s0: done" in waited.stdout

    log = (long_dir / "worker.log").read_text()
    assert log.count("=== worker started") == 2 and "restart 1)" in log, log
    resumed = [line for line in log.splitlines() if "resuming from" in line]
    assert len(resumed) == 1 and int(resumed[0].rsplit(" ", 1)[1]) >= 10, log  # not from step 0

    local = run_here(load_ablation(path), tmp_path / "local" / "c")  # the same runs, one thread, no engine
    for run in load_ablation(path).runs:
        got = records(root / run.name)
        assert [s for s, _ in got] == list(range(1, run.spec["train"]["steps"] + 1)), run.name  # each step once
        assert got == records(local / run.name), run.name
    assert load_table(root)[FIGURES].equals(load_table(local)[FIGURES])
    assert waited.stdout.split("\n\n")[-1].count("done") == 3  # the table the command ended with


# -- Ray ---------------------------------------------------------------------------------------------

@pytest.mark.xdist_group("ray")  # one local Ray instance at a time
@pytest.mark.slow
def test_ray_runs_each_run_as_a_task_with_its_gpus_and_ends_like_a_local_run(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    from unetlab.sweeps.engines import build

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    path = write_ablation(tmp_path, {"one": {}, "two": {"resources.gpus": 2, "train.lr": 2e-3}}, steps=10)
    ablation = load_ablation(path)
    ray.init(num_cpus=2, num_gpus=3, include_dashboard=False, log_to_driver=False)  # 3 fake GPUs
    try:
        said = []
        result = run_sweep(ablation, tmp_path / "ray" / "c", progress=False, echo=said.append, engine=build("ray"))
        assert ray.is_initialized()  # a Ray instance the engine did not start is left running
    finally:
        ray.shutdown()
    assert result.outcome == {r.name: "done" for r in ablation.runs}, said
    for run, gpus in zip(ablation.runs, (1, 2)):
        log = (tmp_path / "ray" / "c" / run.name / "worker.log").read_text()
        seen = re.search(r"CUDA_VISIBLE_DEVICES=([0-9,]*), CUDA_DEVICE_ORDER", log).group(1).split(",")
        assert len(seen) == gpus and all(g.isdigit() for g in seen), log  # the worker saw the GPUs Ray gave it
        assert f"(ray task, GPUs {','.join(seen)})" in log
    run_here(ablation, tmp_path / "local" / "c")
    for run in ablation.runs:
        assert records(tmp_path / "ray" / "c" / run.name) == records(tmp_path / "local" / "c" / run.name)
    assert load_table(tmp_path / "ray" / "c")[FIGURES].equals(load_table(tmp_path / "local" / "c")[FIGURES])


@pytest.mark.xdist_group("ray")  # one local Ray instance at a time
@pytest.mark.slow
def test_a_run_wanting_more_gpus_than_the_ray_cluster_has_is_one_line(tmp_path, capsys):
    pytest.importorskip("ray")
    path = write_ablation(tmp_path, {"one": {"resources.gpus": 16}}, steps=10)
    assert main(["ablate", str(path), "--runs", str(tmp_path / "runs"), "--engine", "ray", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.fullmatch(r"unetlab ablate: error: one-torch-s0: resources.gpus is 16 but the Ray cluster has \d+ "
                        r"GPU\(s\) \(run on the CPU with --gpus none\)", err), err
    assert not (tmp_path / "runs").exists()
