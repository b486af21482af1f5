"""A real search on the CPU: trials are runs, some pruned; raising ``trials`` and killing the search
mid-trial resume it with exact counts; two sweepers on one study keep its total; the tables show it.

One small search (tiny digits U-Net, 40 steps per trial, one trial at a time) is run for the
module, in three invocations of ``unetlab ablate``: 3 trials; then ``trials: 5``, killed with
SIGKILL while trial 3 trains; then the same file again, which resumes trial 3 and adds trial 4.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO_ROOT, tiny_digits_spec, wait_for
from unetlab.run import checkpoints, jsonfiles, rundir, runlock

optuna = pytest.importorskip("optuna")

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
STEPS = 40
RUN = "a-t{}-torch-s0"


def write(path: Path, trials: int, pruner=None, **search) -> Path:
    spec = tiny_digits_spec(STEPS, log_every=5, checkpoint_every=10)
    path.write_text(yaml.safe_dump({"name": "s", "base": spec, "variants": {"a": {}}, "search": {
        "method": "random", "seed": 3, "trials": trials, "space": {"train.lr": {"log_uniform": [1.0e-6, 1.0e-2]}},
        "pruner": pruner or {"median": {"metric": "loss", "min_steps": 20, "startup_trials": 1}}, **search}}))
    return path


def ablate(path: Path, runs: Path, *extra) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "unetlab.cli", "ablate", str(path), "--runs", str(runs), "--no-progress",
           "--no-plots", *extra]
    return subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)


def finish(proc: subprocess.Popen, timeout=600) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out
    return out


def load(root: Path, name="s/a-torch"):
    from unetlab.sweeps.search_optuna import storage_for

    return optuna.load_study(study_name=name, storage=storage_for(root))


def states(study) -> list[str]:
    return [t.state.name.lower() for t in study.get_trials()]


def starts(run_dir: Path) -> int:
    return (run_dir / "worker.log").read_text().count("=== worker started")


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    """The module's search: {"root", "file", "after_first": states after 3 trials, "killed": number}."""
    tmp = tmp_path_factory.mktemp("search")
    runs, file = tmp / "runs", tmp / "s.yaml"
    root = runs / "s"
    finish(ablate(write(file, 3), runs))
    after_first = states(load(root))
    write(file, 5)
    proc = ablate(file, runs)
    killed = root / RUN.format(3)  # trial 3: the first of the two added
    wait_for(lambda: (killed / rundir.LAST).is_file() and len(runlock.holders(killed)) == 2, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    out = finish(ablate(file, runs))
    return {"root": root, "file": file, "runs": runs, "after_first": after_first, "killed": killed, "out": out}


@pytest.mark.slow
def test_trials_are_counted_exactly_and_some_are_pruned(search):
    root = search["root"]
    assert len(search["after_first"]) == 3 and "running" not in search["after_first"]
    study = load(root)
    assert [t.number for t in study.get_trials()] == [0, 1, 2, 3, 4]  # raising 3 -> 5 added exactly 2
    got = states(study)
    assert set(got) <= {"complete", "pruned"} and "complete" in got and "pruned" in got, got
    assert sorted(p.name for p in root.iterdir() if p.name.startswith("a-")) == [RUN.format(n) for n in range(5)]
    for trial in study.get_trials():
        run_dir = root / RUN.format(trial.number)
        state = rundir.read_state(run_dir)
        assert state.config["run"]["trial"] == trial.number
        assert state.config["run"]["params"] == {"train.lr": trial.params["train.lr"]}
        assert state.config["spec"]["train"]["lr"] == trial.params["train.lr"]
        if trial.state.name == "PRUNED":  # stopped early, checkpointed at the step it stopped
            assert state.status == rundir.Status.PRUNED and state.summary["step"] < STEPS
            assert int(checkpoints.load_arrays(run_dir / rundir.LAST)["step"]) == state.summary["step"]
            assert state.summary["reason"].startswith("median on loss at step")
        else:
            assert state.status == rundir.Status.DONE and trial.value == state.summary["final_loss"]


@pytest.mark.slow
def test_a_killed_trial_resumes_as_the_same_trial(search):
    killed = search["killed"]
    assert starts(killed) == 2  # started, killed with its search, resumed by the rerun
    steps = [r["step"] for r in jsonfiles.read_jsonl(killed / rundir.METRICS)]
    assert steps == list(range(5, steps[-1] + 1, 5))  # one record per logged step, none repeated
    others = [search["root"] / RUN.format(n) for n in (0, 1, 2, 4)]
    assert [starts(d) for d in others] == [1, 1, 1, 1]


@pytest.mark.slow
def test_a_rerun_of_a_finished_search_adds_nothing(search):
    before = {p.name: (p / rundir.SUMMARY).read_bytes() for p in search["root"].glob("a-t*")}
    out = finish(ablate(search["file"], search["runs"]))
    assert "5/5" in out
    assert len(load(search["root"]).get_trials()) == 5
    assert {p.name: (p / rundir.SUMMARY).read_bytes() for p in search["root"].glob("a-t*")} == before


@pytest.mark.slow
def test_the_table_shows_trials_values_and_pruned(search):
    out = subprocess.run([sys.executable, "-m", "unetlab.cli", "table", str(search["root"]), "--no-plots"],
                         cwd=REPO_ROOT, capture_output=True, text=True, env=ENV, check=True).stdout
    header, rows = out.splitlines()[0], out.splitlines()[2:7]
    assert "trial" in header.split() and "train.lr" in header.split()
    study = load(search["root"])
    for trial, row in zip(study.get_trials(), rows):
        assert row.split()[1] == str(trial.number)
        assert row.split()[2] == f"{trial.params['train.lr']:.4g}"
        assert ("pruned " if trial.state.name == "PRUNED" else "done") in row


@pytest.mark.slow
def test_table_search_shows_the_best_trial_and_writes_plots(search, tmp_path):
    out = subprocess.run([sys.executable, "-m", "unetlab.cli", "table", str(search["root"]), "--search",
                          "--plots", str(tmp_path)], cwd=REPO_ROOT, capture_output=True, text=True, env=ENV,
                         check=True).stdout
    study = load(search["root"])
    assert out.startswith("study s/a-torch: objective final loss (min), method random, pruner median on loss: 5 trials")
    first = next(line for line in out.splitlines() if line.startswith("1 "))
    assert first.split()[1] == str(study.best_trial.number) and RUN.format(study.best_trial.number) in first
    assert "importance (fANOVA): train.lr 1.00" in out
    for kind in ("history", "importance", "slice", "curves"):
        png = tmp_path / f"search-s-a-torch-{kind}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", kind


@pytest.mark.slow
def test_two_sweepers_on_one_study_keep_its_total(tmp_path):
    """Two ``unetlab ablate`` processes on one study (in a database given by --storage): 4 trials in all,
    each run once."""
    file, runs = write(tmp_path / "s.yaml", 4, pruner={"none": {}}), tmp_path / "runs"
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    first = ablate(file, runs, "--storage", storage)
    wait_for(lambda: (runs / "s" / RUN.format(0) / rundir.METRICS).is_file(), first)
    second = ablate(file, runs, "--storage", storage)
    finish(first), finish(second)
    study = optuna.load_study(study_name="s/a-torch", storage=storage)
    assert states(study) == ["complete"] * 4
    assert sorted(p.name for p in (runs / "s").glob("a-t*")) == [RUN.format(n) for n in range(4)]
    assert [starts(runs / "s" / RUN.format(n)) for n in range(4)] == [1, 1, 1, 1]


# -- without training: the search's bookkeeping ----------------------------------------------------

def study_of(tmp_path, trials=2):
    from unetlab.sweeps.ablation import load_ablation
    from unetlab.sweeps.search import Study

    ablation = load_ablation(write(tmp_path / "s.yaml", trials))
    storage = optuna.storages.InMemoryStorage()
    return lambda: Study(ablation, ablation.runs[0], tmp_path / "runs" / "s", storage, echo=lambda line: None)


def test_a_trial_whose_worker_was_killed_is_left_for_the_next_run_of_the_search(tmp_path):
    sweeper = study_of(tmp_path)
    first = sweeper()
    lane = first.claim(set())
    assert lane.run.name == RUN.format(0) and lane.run_dir.is_dir()
    rundir.write_summary(lane.run_dir, {"status": "failed", "reason": "worker died (signal SIGKILL); see worker.log"})
    assert first.conclude(lane) == "interrupted"
    assert states(first.study) == ["running"]
    again = first.claim({})  # this sweeper does not retry it: it asks the next trial
    assert again.trial.number == 1
    again.lock.release()
    rerun = sweeper()
    rerun.study = first.study  # the same storage, as a later run of the search sees it
    resumed = rerun.claim(set())
    assert resumed.trial.number == 0 and resumed.run.params == lane.run.params
    resumed.lock.release()


def test_a_lane_gets_exactly_its_slots():
    from unetlab.sweeps.pool import Pool
    from unetlab.sweeps.search import _lane_pool

    pool = Pool(("3", "5", "7"), 3, 4, pin=True)
    lane = _lane_pool(pool, [1, 2])
    assert lane.worker_env([0, 1])["CUDA_VISIBLE_DEVICES"] == "5,7" and lane.size == 2
    assert _lane_pool(Pool((), 2, 1, pin=True), [1]).worker_env([0]) == {
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
