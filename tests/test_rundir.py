"""A run folder's life: one writer, statuses, guarded summaries, exact resume of the records."""
from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from unetlab.run import checkpoints, jsonfiles, rundir, runlock

from unetlab.files import atomic_write_bytes
from unetlab.errors import UnetlabError
from unetlab.run.loss_log import FINAL_LOSS_STEPS, LossLog, debiased_ema
from unetlab.run.rundir import Status
from unetlab.reports.table import format_table, load_table, run_row
from unetlab.run.trainer import train_run

from conftest import REPO_ROOT, tiny_digits_spec

pytestmark = pytest.mark.usefixtures("one_thread")

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def snapshot(run_dir: Path) -> dict:
    """Every file of the run folder (but the lock and the events record) and its bytes."""
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*"))
            if p.is_file() and p.name not in (runlock.LOCK, rundir.EVENTS)}


def compared(records: list[dict]) -> list[tuple]:
    return [(r["step"], r["loss"], r["trailing_loss"], r["lr"]) for r in records]


# -- exact resume ------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_run_stopped_anywhere_resumes_to_the_uninterrupted_records_and_summary(tmp_path):
    spec = tiny_digits_spec(11, log_every=3, checkpoint_every=4)
    full = tmp_path / "full"
    want = train_run(spec, full, "torch", progress=False)
    want_records = jsonfiles.read_jsonl(full / rundir.METRICS)
    assert [r["step"] for r in want_records] == [3, 6, 9, 11]
    for stops in ([1], [4], [5, 2], [7, 3]):  # mid-window, on a checkpoint, and twice
        run = tmp_path / f"cut-{'-'.join(map(str, stops))}"
        for n in stops:
            assert train_run(spec, run, "torch", progress=False, stop_after=n)["status"] == "partial"
        step = int(checkpoints.load_arrays(run / rundir.LAST)["step"])
        # a kill after the checkpoint leaves records beyond it, one of them torn
        with open(run / rundir.METRICS, "a") as f:
            f.write(json.dumps({"step": step + 1, "loss": 9.0, "trailing_loss": 9.0, "lr": 0}) + "\n{\"step")
        got = train_run(spec, run, "torch", progress=False)
        assert compared(jsonfiles.read_jsonl(run / rundir.METRICS)) == compared(want_records), stops
        assert (got["final_loss"], got["best_loss"], got["step"]) == \
               (want["final_loss"], want["best_loss"], want["step"])


def test_final_loss_is_the_mean_over_the_last_steps_whatever_log_every_is():
    log = LossLog(n=4)
    log.add([1.0, 2.0, 3.0])
    assert log.close_window() == (2.0, 3, 2.0)
    log.add([4.0, 5.0])
    state = log.state()
    resumed = LossLog(n=4)
    resumed.load(state)
    assert resumed.close_window() == (4.5, 2, np.mean([2.0, 3.0, 4.0, 5.0]))
    assert FINAL_LOSS_STEPS == 100
    ema = debiased_ema([2.0, 2.0, 2.0])
    np.testing.assert_allclose(ema, [2.0, 2.0, 2.0])  # no ramp up from zero
    np.testing.assert_allclose(debiased_ema([1.0, 3.0], beta=0.5), [1.0, (0.25 * 1 + 0.5 * 3) / 0.75])


# -- one writer --------------------------------------------------------------------------------

def unetlab(*args, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "unetlab.cli", *map(str, args)], cwd=REPO_ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def wait_until(condition, proc, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the process ended early (rc {proc.returncode}): {proc.communicate()}")
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting for the run's state")
        time.sleep(0.05)


@pytest.mark.slow
def test_two_trains_on_one_folder_one_writer_and_sigterm_checkpoints(tmp_path):
    import yaml

    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump(tiny_digits_spec(100_000, log_every=3, checkpoint_every=1000)))
    run = tmp_path / "run"
    first = unetlab("train", spec, "--run", run, "--no-progress")
    wait_until(lambda: rundir.last_step(run) >= 3 and first.pid in runlock.holders(run), first)
    second = unetlab("train", spec, "--run", run, "--no-progress")
    out, err = second.communicate(timeout=300)
    assert second.returncode == 2 and out == "", (out, err)
    assert err.strip() == (f"unetlab train: error: {run}: in use by unetlab train (pid {first.pid} on host "
                           f"{socket.gethostname()}); wait for it to end, or use another run folder")
    first.send_signal(signal.SIGTERM)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 130, (out, err)
    summary = jsonfiles.read_json(run / rundir.SUMMARY)
    assert summary["status"] == "interrupted" and "SIGTERM" in summary["reason"], summary
    step = int(checkpoints.load_arrays(run / rundir.LAST)["step"])
    steps = [r["step"] for r in jsonfiles.read_jsonl(run / rundir.METRICS)]
    assert step == summary["step"] and steps == list(range(3, step + 1, 3)), (step, steps)
    assert rundir.run_status(run) == Status.INTERRUPTED and runlock.holders(run) == []


def test_a_refused_rerun_changes_no_byte_of_a_done_run_and_a_rerun_keeps_its_fid(tmp_path):
    run = tmp_path / "r"
    train_run(tiny_digits_spec(4), run, "torch", progress=False)
    rundir.update_summary(run, fid={"name": "FID", "value": 12.5, "n": 8, "mode": "clean",
                                    "reference": "cifar10-train"})
    before = snapshot(run)
    with pytest.raises(UnetlabError, match="holds a run with a different config"):
        train_run(tiny_digits_spec(4, lr=2e-4), run, "torch", progress=False)
    assert snapshot(run) == before
    events = jsonfiles.read_jsonl(run / rundir.EVENTS)
    assert [e["event"] for e in events] == ["rerun refused"]
    summary = train_run(tiny_digits_spec(4), run, "torch", progress=False)  # done: nothing to do
    assert summary["fid"]["value"] == 12.5 and snapshot(run) == before
    # a failure reported over a done run goes to the events record, not over its summary
    assert not rundir.write_summary(run, {"status": "failed", "reason": "boom"})
    assert snapshot(run) == before
    assert jsonfiles.read_jsonl(run / rundir.EVENTS)[-1]["reason"] == "boom"


# -- statuses and the table ----------------------------------------------------------------------

def make_run(root: Path, name: str, summary: dict | None = None, steps=(5, 10), config_steps=20) -> Path:
    run = root / name
    rundir.write_config(run, {"spec": {"train": {"steps": config_steps}},
                              "run": {"framework": "torch", "seed": 0, "ablation": "abl", "variant": name}})
    if steps:
        jsonfiles.append_jsonl(run / rundir.METRICS, [{"step": s, "loss": 1.0 / s, "trailing_loss": 1.0 / s,
                                                    "img_s": 100.0, "elapsed": float(s)} for s in steps])
    if summary is not None:
        rundir.write_summary(run, summary)
    return run


@pytest.fixture
def other_process():
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    yield proc
    proc.communicate(b"", timeout=30)


def test_the_table_shows_each_status(tmp_path, other_process):
    root = tmp_path / "abl"
    make_run(root, "new", steps=())
    make_run(root, "partial", {"status": "partial", "step": 10})
    make_run(root, "interrupted", {"status": "interrupted", "step": 10, "reason": "KeyboardInterrupt: stopped"})
    make_run(root, "failed", {"status": "failed", "step": 10, "reason": "TrainingDiverged: loss became nan"})
    make_run(root, "done", {"status": "done", "step": 20, "final_loss": 0.1}, steps=(10, 20))
    make_run(root, "pruned", {"status": "pruned", "step": 10, "reason": "asha on loss at step 5"})
    running = make_run(root, "running", {"status": "running", "step": 10})
    (running / runlock.LOCK).write_text(json.dumps({"host": socket.gethostname(), "pids": [other_process.pid],
                                                   "command": "unetlab train"}))
    changed = make_run(root, "changed", {"status": "done", "step": 20}, steps=(10, 20))
    config = json.loads((changed / rundir.CONFIG).read_text())
    config["spec"]["train"]["lr"] = 0.5  # edited by hand after the run
    (changed / rundir.CONFIG).write_text(json.dumps(config))
    corrupt = make_run(root, "corrupt", {"status": "done", "step": 20})
    (corrupt / rundir.CONFIG).write_text('{"spec": {"train": ')
    rows = {Path(r["path"]).name: r for r in load_table(root).to_dict("records")}
    assert {k: r["status"] for k, r in rows.items()} == {
        "new": "new",
        "partial": "partial 10/20",
        "interrupted": "interrupted 10/20: KeyboardInterrupt: stopped",
        "failed": "failed: TrainingDiverged: loss became nan",
        "done": "done",
        "pruned": "pruned 10/20: asha on loss at step 5",
        "running": "running 10/20",
        "changed": "changed: config.json was edited after the run was written",
        "corrupt": "corrupt: config.json: not valid JSON (Expecting value: line 1 column 20 (char 19))",
    }
    assert rows["done"]["final loss"] == 0.05 and rows["partial"]["steps"] == 10
    assert rows["corrupt"]["variant"] == "corrupt" and rows["corrupt"]["ablation"] == "abl"
    assert {Status(rundir.run_status(root / k)) for k in rows} == set(Status)
    text = format_table(load_table(root))
    assert len(text.splitlines()) == 2 + len(rows)  # one line per run, corrupt or not


def test_group_shows_mean_interval_and_n_and_latex_escapes(tmp_path):
    root = tmp_path / "abl"
    for seed, loss in ((0, 0.1), (1, 0.3)):
        run = make_run(root, f"my_var-s{seed}", {"status": "done", "step": 10}, steps=(10,))
        config = json.loads((run / rundir.CONFIG).read_text())
        config["run"].update(seed=seed, variant="my_var")
        rundir.write_config(run, config)
        atomic_write_bytes(run / rundir.METRICS, (json.dumps({"step": 10, "loss": loss,
                                                                     "trailing_loss": loss}) + "\n").encode())
    grouped = load_table(root, group=True)
    assert grouped["final loss mean"][0] == pytest.approx(0.2) and grouped["final loss n"][0] == 2
    assert "0.2000 [-1.0706, 1.4706] n=2" in format_table(grouped)  # 0.2 ± t(0.975, 1) 0.1414 / sqrt(2)
    latex = format_table(grouped, "latex")
    assert r"my\_var" in latex and "my_var" not in latex


def test_stale_temporary_files_go_when_the_lock_is_taken_and_files_are_0644(tmp_path):
    run = tmp_path / "r"
    (run / "checkpoints").mkdir(parents=True)
    stale = [run / "checkpoints" / ".last.npz.k3j2h1", run / ".summary.json.abc"]
    for p in stale:
        p.write_bytes(b"half a file")
    keep = run / "checkpoints" / "other.npz"
    keep.write_bytes(b"")
    lock = runlock.lock(run)
    lock.release()
    assert not any(p.exists() for p in stale) and keep.exists()
    old = os.umask(0o022)
    try:
        jsonfiles.write_json(run / "x.json", {})
        from unetlab.sampling import save_png
        save_png(np.zeros((4, 4, 3), np.uint8), run / "g.png")
    finally:
        os.umask(old)
    for name in ("x.json", "g.png"):
        assert stat.S_IMODE((run / name).stat().st_mode) == 0o644, name


def test_a_corrupt_config_is_one_line_and_refused(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / rundir.CONFIG).write_bytes(b"\xff\xfe not json")
    row = run_row(run)
    assert row["status"].startswith("corrupt: config.json: not valid JSON") and "\n" not in row["status"]
    with pytest.raises(UnetlabError, match="config.json: not valid JSON"):
        train_run(tiny_digits_spec(4), run, "torch", progress=False)
    assert (run / rundir.CONFIG).read_bytes() == b"\xff\xfe not json"
