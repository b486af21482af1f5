"""Data-parallel runs: N ranks (gloo under torchrun, MPI under mpirun) follow one process."""
import contextlib
import hashlib
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from unetlab import UnetlabError
from unetlab.run import distributed, jsonfiles, rundir, runlock
from unetlab.cli import main
from unetlab.data import Batches
from unetlab.spec import resolve_run_spec
from unetlab.run.trainer import RANKS_LOG, run_config, train_run

from conftest import tiny_digits_spec

pytestmark = pytest.mark.usefixtures("one_thread")

STEPS = 30
#: 2 ranks against 1 process on the same global batch (measured: about 1e-7)
LOSS_ATOL = 1e-5
EMA_ATOL = 1e-4


def spec(steps=STEPS, **train):
    return tiny_digits_spec(steps, **{"log_every": 1, "checkpoint_every": 10, **train})


def losses(run_dir):
    return np.array([r["loss"] for r in jsonfiles.read_jsonl(run_dir / rundir.METRICS)])


def ema(run_dir):
    return dict(np.load(run_dir / rundir.EMA))


def files(run_dir):
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file())


def hashes(run_dir):
    return {name: hashlib.sha256((run_dir / name).read_bytes()).hexdigest() for name in files(run_dir)
            if name not in (runlock.LOCK, rundir.EVENTS)}


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    run = tmp_path_factory.mktemp("ddp") / "one"
    assert train_run(spec(), run, "torch", progress=False)["status"] == "done"
    return run


# -- the framework-neutral part ---------------------------------------------------------------

def test_ranks_slice_the_global_batch_into_equal_parts():
    world = [distributed.World(r, 4, r, "torchrun") for r in range(4)]
    assert [distributed.rank_slice(32, w) for w in world] == [slice(0, 8), slice(8, 16), slice(16, 24),
                                                               slice(24, 32)]
    images = np.arange(64, dtype=np.float32).reshape(64, 1, 1, 1)
    whole = Batches(images, 32, seed=3, flip=True)
    parts = [Batches(images, 32, seed=3, flip=True, part=distributed.rank_slice(32, w)) for w in world]
    for step in (0, 1, 5):  # across an epoch boundary too
        np.testing.assert_array_equal(np.concatenate([p(step) for p in parts]), whole(step))


def test_a_batch_that_does_not_divide_names_both_numbers():
    with pytest.raises(UnetlabError, match="train.batch_size 30 does not divide over 4 processes"):
        distributed.rank_slice(30, distributed.World(0, 4, 0, "torchrun"))


def test_a_spec_whose_resources_do_not_split_its_batch_is_refused():
    bad = spec()
    bad["resources"] = {"gpus": 3}
    with pytest.raises(UnetlabError, match=r"^variants.x.resources.gpus: 3 data-parallel ranks do not split "
                                           r"train.batch_size 16 into equal slices$"):
        resolve_run_spec(bad, "variants.x")


def test_world_comes_from_the_launcher_and_must_be_the_one_asked_for(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", distributed.NPROC_ENV):
        monkeypatch.delenv(name, raising=False)
    assert distributed.world() == distributed.World()  # a plain process: rank 0 of 1, writes
    monkeypatch.setenv(distributed.NPROC_ENV, "2")
    with pytest.raises(UnetlabError, match="not started by torchrun or mpirun"):
        distributed.world()
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "3")
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "1")
    with pytest.raises(UnetlabError, match="inconsistent world: UNETLAB_NPROC=2 but mpirun started 3"):
        distributed.world()
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    w = distributed.world()
    assert (w.rank, w.size, w.launcher, w.writes) == (1, 2, "mpirun", False)


def test_rank_zero_keeps_the_single_process_seed_and_other_ranks_differ():
    assert distributed.framework_seed(7, 12, 0) == 7 * 1_000_003 + 12
    seeds = {distributed.framework_seed(7, 12, r) for r in range(4)}
    assert len(seeds) == 4 and distributed.framework_seed(7, 12, 1) == distributed.framework_seed(7, 12, 1)


def test_a_rank_trains_only_under_its_launchers_lock(monkeypatch, tmp_path):
    monkeypatch.setenv(distributed.NPROC_ENV, "2")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv(distributed.LAUNCHER_PID_ENV, str(os.getpid()))
    run = tmp_path / "run"
    with pytest.raises(UnetlabError, match="a rank runs only under the launcher holding the run's lock"):
        train_run(spec(), run, "torch", progress=False)
    assert not run.exists()  # a refused rank writes nothing
    with runlock.hold(run):  # held by this process, as a launcher holds it: the rank goes ahead
        with distributed.launcher_lock(run) as held:
            assert not held.owned and runlock.holders(run) == [os.getpid()]


def test_a_rank_started_by_hand_is_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != distributed.NPROC_ENV}
    done = subprocess.run([sys.executable, "-m", "unetlab.run.rank", str(tmp_path)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "unetlab rank: error: a rank of a data-parallel run is started by its launcher (UNETLAB_NPROC unset); "
        "use unetlab train --nproc N"]


# -- PyTorch: DDP over 2 gloo ranks --------------------------------------------------------------

@pytest.mark.slow
def test_two_gloo_ranks_follow_one_process_and_only_rank_0_writes(one_process, tmp_path):
    """Trained as a sweep's worker trains a run with ``resources.gpus: 2`` (2 CPU ranks here)."""
    run = tmp_path / "two"
    two = spec()
    two["resources"] = {"gpus": 2}
    rundir.write_config(run, run_config(resolve_run_spec(two), "torch", 0))
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "-m", "unetlab.run.worker", str(run)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    np.testing.assert_allclose(losses(run), losses(one_process), rtol=0, atol=LOSS_ATOL)
    assert len(losses(run)) == STEPS
    a, b = ema(run), ema(one_process)
    assert a.keys() == b.keys() and max(np.abs(a[k] - b[k]).max() for k in a) < EMA_ATOL
    # the files of one process, each written once: one metrics record per step, no rank-1 leftovers
    assert files(run) == sorted(files(one_process) + [RANKS_LOG])  # and the ranks' output, kept for a failure
    assert [r["step"] for r in jsonfiles.read_jsonl(run / rundir.METRICS)] == list(range(1, STEPS + 1))
    summary = jsonfiles.read_json(run / rundir.SUMMARY)
    assert summary["status"] == "done" and summary["step"] == STEPS
    assert runlock.holders(run) == []  # the launcher let the lock go; no rank kept it


@pytest.mark.slow
def test_a_run_checkpointed_under_two_ranks_resumes_under_one(one_process, tmp_path):
    run = tmp_path / "cut"
    partial = train_run(spec(), run, "torch", progress=False, nproc=2, stop_after=STEPS // 2)
    assert partial["status"] == "partial" and partial["step"] == STEPS // 2
    done = train_run(spec(), run, "torch", progress=False, nproc=1)
    assert done["status"] == "done" and done["step"] == STEPS
    np.testing.assert_allclose(losses(run), losses(one_process), rtol=0, atol=LOSS_ATOL)


@pytest.mark.slow
def test_ctrl_c_stops_every_rank_at_one_step_with_a_checkpoint(tmp_path):
    """SIGINT to ``unetlab train --nproc 2`` reaches both ranks through their launcher."""
    import yaml

    spec_file, run = tmp_path / "long.yaml", tmp_path / "run"
    spec_file.write_text(yaml.safe_dump(spec(10_000, checkpoint_every=1000)))
    proc = subprocess.Popen([sys.executable, "-m", "unetlab.cli", "train", str(spec_file), "--run", str(run),
                             "--nproc", "2", "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    try:
        while len(jsonfiles.read_jsonl(run / rundir.METRICS)) < 3:  # training under way
            assert proc.poll() is None, proc.communicate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    summary = jsonfiles.read_json(run / rundir.SUMMARY)
    step = int(np.load(run / rundir.LAST)["step"])
    assert summary["status"] == "interrupted" and summary["step"] == step >= 3, summary
    assert jsonfiles.read_jsonl(run / rundir.METRICS)[-1]["step"] == step
    assert runlock.holders(run) == []


def test_a_batch_that_does_not_split_over_nproc_is_refused_before_writing(one_process, capsys):
    before = hashes(one_process)
    spec_file = one_process.parent / "spec.yaml"
    import yaml

    spec_file.write_text(yaml.safe_dump(spec()))
    for argv, message in (
        (["--nproc", "3"], "train.batch_size 16 does not divide over 3 processes"),
        (["--nproc", "0"], "argument --nproc: must be a positive integer, got 0"),
    ):
        try:
            rc = main(["train", str(spec_file), "--run", str(one_process), "--no-progress", *argv])
        except SystemExit as exc:
            rc = exc.code
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        assert rc == 2 and len(lines) == 1 and message in lines[0], err
    assert hashes(one_process) == before


def test_jittor_without_mpirun_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no mpirun on it
    with pytest.raises(UnetlabError, match="jittor with several processes needs mpirun, which is not on PATH"):
        train_run(spec(), tmp_path / "run", "jittor", progress=False, nproc=2)
    assert not (tmp_path / "run").exists()


# -- Jittor: its MPI under OpenMPI's mpirun -------------------------------------------------------

JITTOR_STEPS = 10


@pytest.mark.skipif(not distributed.shutil.which("mpirun"), reason="needs OpenMPI's mpirun (./dev test installs it)")
@pytest.mark.slow
def test_two_mpi_ranks_of_jittor_follow_one_process(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    train_run(spec(JITTOR_STEPS), one, "jittor", progress=False)
    summary = train_run(spec(JITTOR_STEPS), two, "jittor", progress=False, nproc=2)
    assert summary["status"] == "done" and summary["step"] == JITTOR_STEPS
    assert len(losses(two)) == JITTOR_STEPS
    np.testing.assert_allclose(losses(two), losses(one), rtol=0, atol=LOSS_ATOL)
    a, b = ema(two), ema(one)
    assert max(np.abs(a[k] - b[k]).max() for k in a) < EMA_ATOL
    assert files(two) == sorted(files(one) + [RANKS_LOG])


@pytest.mark.parametrize("nproc,ompi,given,use_mpi", [
    ("2", "2", None, "1"), ("2", "2", "0", "1"),  # the launcher's own use_mpi=0 is not inherited
    (None, "2", None, "0"), ("2", None, None, "0"), (None, None, None, "0")])
def test_jittor_mpi_is_on_only_in_the_ranks_mpirun_started(monkeypatch, nproc, ompi, given, use_mpi):
    from unetlab.frameworks.jittor import setup as jittor_setup

    others = ("nvcc_path", "use_cutt", "use_cutlass", "use_nccl", "log_silent")  # prepare() sets them too
    for name, value in (("use_mpi", given), ("use_mkl", "0"), (distributed.NPROC_ENV, nproc),
                        ("OMPI_COMM_WORLD_SIZE", ompi), *((n, os.environ.get(n)) for n in others)):
        monkeypatch.setenv(name, value or "")  # restored after the test
        if value is None:
            monkeypatch.delenv(name)
    monkeypatch.setattr(jittor_setup, "_summary", None)
    jittor_setup.prepare("cpu")
    assert os.environ["use_mpi"] == use_mpi
