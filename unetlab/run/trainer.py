"""DDPM training, written once against the framework backends.

Everything random in a step -- the batch, its flips, the timesteps, the noise (with
``train.noise: host``) and the framework's own RNG (dropout) -- is seeded from
``(seed, step)``, so a resumed run repeats exactly what an uninterrupted one does, and two
variants with the same seed share them wherever shapes agree (common random numbers; see
:mod:`unetlab.run.crn` for ``train.crn``).  The
checkpoint also holds the losses of the open log window, so the resumed run's metrics records
are the uninterrupted run's too.  SIGINT, SIGTERM, SIGUSR1 and SIGUSR2 (a cluster's warning before
preemption or the time limit) stop training after the current step with a checkpoint at that step;
so does a stop request (:func:`unetlab.run.rundir.request_stop`, from a search's pruner), at the next
log step, and the run ends ``pruned``.

With several processes (``nproc``, see :mod:`unetlab.run.distributed`) each rank trains on its slice
of every global batch, gradients and logged losses are averaged over ranks, and only rank 0
writes the run's files; the framework RNG is seeded from ``(seed, step, rank)``.
"""
from __future__ import annotations

import contextlib
import math
from pathlib import Path
import signal
import threading
import time
import warnings

import numpy as np

from . import checkpoints, distributed, jsonfiles, rundir, runlock
from ..data import Batches, DeviceBatches, load_dataset
from ..diffusion import make_schedule, sample_timesteps, training_loss
from ..errors import UnetlabError
from ..frameworks import backend_for, check_run_section, ops_for
from ..metrics.model_report import forward_gflops
from ..model import build_model, check_model_builds
from ..sampling import generate, grid, save_png, to_uint8
from ..spec import budget_steps, resolve_run_spec
from ..tool_output import log_size, read_log, tool_error
from ..weights import count_parameters, get_weights, set_weights
from .crn import stream_seed
from .evaluator import PeriodicEvaluator
from .loss_log import LossLog, best_loss, final_loss
from .signals import STOP_SIGNALS, keep_handlers_out_of_forks


class TrainingDiverged(UnetlabError):
    """The loss became NaN or infinite."""


#: The ranks' output (launcher and every rank), in the run folder.
RANKS_LOG = "ranks.log"


class RanksFailed(UnetlabError):
    """A data-parallel run's ranks ended in failure (the reason is in the run's summary)."""


def _lr_at(train: dict, step: int) -> float:
    if train["warmup_steps"] > 0:
        return train["lr"] * min(1.0, (step + 1) / train["warmup_steps"])
    return train["lr"]


class Trainer:
    """One run: model, EMA, optimizer and data, stepping and checkpointing into ``run_dir``."""

    def __init__(self, spec, run_dir, framework: str, seed: int | None = None, identity: dict | None = None):
        self.spec = resolve_run_spec(spec)
        self.train = self.spec["train"]
        self.seed = self.train["seed"] if seed is None else seed  # as recorded in config.json
        self.stream_seed = stream_seed(self.seed, self.train["crn"], (identity or {}).get("variant"), self.spec)
        self.framework = framework
        check_run_section(framework, "train", self.train)
        self.backend = backend_for(framework)
        self.world = distributed.world()
        self.part = distributed.rank_slice(self.train["batch_size"], self.world)  # this rank's slice
        if self.world.distributed:  # first: it picks this rank's GPU before anything touches one
            self.backend.init_world(self.world)
        if self.train["precision"] != "fp32" and self.backend.device_name() == "cpu":
            warnings.warn(f"train.precision {self.train['precision']} on the CPU: mixed precision is "
                          f"meant for GPUs (Jittor fp16 measured about 500x slower than fp32 on a CPU)",
                          stacklevel=2)
        self.ops = ops_for(framework)
        self.run_dir = Path(run_dir)
        if self.world.writes:
            rundir.claim_config(self.run_dir, run_config(self.spec, framework, self.seed, identity))
        m = self.spec["model"]
        self.images = load_dataset(self.spec["data"], m["image_size"], m["in_channels"], self.stream_seed)
        self.batches = Batches(self.images, self.train["batch_size"], self.stream_seed, self.spec["data"]["flip"],
                               part=self.part)
        # with device noise, the images stay on the device too: nothing image-sized is copied per step
        self.device_batches = (DeviceBatches(self.batches, self.backend, self.ops)
                               if self.train["noise"] == "device" else None)
        self.total_steps = budget_steps(self.train, len(self.images))
        self.betas = make_schedule(self.spec["diffusion"]).betas
        self.model = build_model(m, framework, seed=self.stream_seed)
        self.ema = build_model(m, framework, seed=self.stream_seed)
        self.backend.set_train(self.ema, False)
        self.forward = self.backend.fast_forward(
            self.model, self.train["compile_mode"] if self.train["compile"] else None, self.train["channels_last"],
            data_parallel=self.world.size > 1)
        self.opt = self.backend.Optimizer(self.model, self.train["optimizer"], self.train["lr"],
                                          self.train["betas"], self.train["adam_eps"], self.train["weight_decay"],
                                          self.train["grad_clip"])
        self.evaluator = PeriodicEvaluator(self.spec, self.images)
        self.step = 0
        self.elapsed_before = 0.0  # training seconds of earlier sessions of this run
        self.losses = LossLog()
        self.window_seconds = 0.0  # seconds spent in the open log window before this session
        self._stop_signal = None
        self.pruned_reason = None  # set when a stop request was found at a log step
        self._resume()
        self._saved_step = self.step

    # -- run folder -------------------------------------------------------------------------
    def _resume(self) -> None:
        last = self.run_dir / rundir.LAST
        if not last.is_file():
            if self.world.writes:
                jsonfiles.keep_records_until(self.run_dir / rundir.METRICS, 0)
            return
        arrays = checkpoints.load_arrays(last)
        set_weights(self.model, checkpoints.split_prefix(arrays, "model"), f"checkpoint {last}")
        set_weights(self.ema, checkpoints.split_prefix(arrays, "ema"), f"checkpoint {last}")
        self.opt.load(checkpoints.split_prefix(arrays, "opt"))
        self.step = int(arrays["step"])
        self.losses.load(checkpoints.split_prefix(arrays, "log"))
        if self.world.writes:
            jsonfiles.keep_records_until(self.run_dir / rundir.METRICS, self.step)
        kept = jsonfiles.read_metrics(self.run_dir / rundir.METRICS)
        self.elapsed_before = (float(arrays["log/elapsed"]) if "log/elapsed" in arrays
                               else kept[-1]["elapsed"] if kept else 0.0)
        self.window_seconds = float(arrays.get("log/window_seconds", 0.0))

    def save_checkpoint(self, elapsed: float | None = None, window_seconds: float = 0.0) -> None:
        """Write ``checkpoints/last.npz`` at the current step (with the open log window's losses)."""
        arrays = {"step": np.asarray(self.step)}
        arrays.update(checkpoints.with_prefix("log", self.losses.state()))
        arrays["log/elapsed"] = np.asarray(self.elapsed_before if elapsed is None else elapsed)
        arrays["log/window_seconds"] = np.asarray(window_seconds)
        arrays.update(checkpoints.with_prefix("model", get_weights(self.model)))
        arrays.update(checkpoints.with_prefix("ema", get_weights(self.ema)))
        arrays.update(checkpoints.with_prefix("opt", self.opt.state()))
        checkpoints.save_arrays(self.run_dir / rundir.LAST, arrays)

    # -- one step ---------------------------------------------------------------------------
    def _batch(self, step: int):
        """(x0, t, noise) of step ``step``, this rank's slice of them: images and noise as tensors,
        timesteps on the host.  The global batch's draws are made whole and sliced, so every
        world size sees the same global batch."""
        b = self.backend
        rng = np.random.default_rng([self.stream_seed, 4, step])
        t = sample_timesteps(rng, self.train["batch_size"], self.spec["diffusion"]["T"],
                             self.spec["diffusion"]["timestep_sampling"])[self.part]
        if self.device_batches is None:
            x0 = self.batches(step)
            noise = rng.standard_normal((self.train["batch_size"],) + x0.shape[1:], dtype=np.float32)
            return b.tensor(x0), t, b.tensor(noise[self.part])
        x0 = self.device_batches(step)
        return x0, t, b.randn_like(x0)

    def _network(self, x_t, t):
        with self.backend.autocast(self.train["precision"]):
            return self.forward(x_t, t)

    def train_step(self):
        """One optimizer step; returns (loss tensor, grad-norm tensor)."""
        b, diffusion = self.backend, self.spec["diffusion"]
        b.seed(distributed.framework_seed(self.stream_seed, self.step, self.world.rank))
        x0, t, noise = self._batch(self.step)
        lr = _lr_at(self.train, self.step)
        self.opt.set_lr(lr)
        loss = training_loss(self._network, x0, t, noise, betas=self.betas, loss=diffusion["loss"],
                             prediction=diffusion["prediction"])
        grad_norm = self.opt.step(loss)  # with several ranks: of the gradients averaged over ranks
        if self.world.size > 1:
            loss = b.mean_over_ranks(loss)
        decay = self.train["ema_decay"] if self.step >= self.train["ema_start"] else 0.0
        b.ema_update(self.ema, self.model, decay)
        self.step += 1
        return loss, grad_norm

    # -- the loop ---------------------------------------------------------------------------
    def run(self, progress: bool = True, stop_after: int | None = None) -> dict:
        """Train to the budget (or ``stop_after`` more steps), then sample a grid and summarise."""
        with self._signals_stop_training():
            self._loop(progress, stop_after)
        if self._stop_signal is not None:
            raise KeyboardInterrupt(f"stopped by {signal.Signals(self._stop_signal).name} at step {self.step} "
                                    f"(checkpointed)")
        end = self.total_steps
        if self.pruned_reason is not None and (end is None or self.step < end):
            return self.pruned_summary()
        return self.finish() if end is None or self.step >= end else self.partial_summary()

    def _loop(self, progress: bool, stop_after: int | None) -> None:
        from tqdm.auto import tqdm

        b, train = self.backend, self.train
        metrics_path = self.run_dir / rundir.METRICS
        if self.world.writes:
            rundir.write_summary(self.run_dir, {"status": "running", "step": self.step})
        deadline = time.monotonic() + train["minutes"] * 60 if train["minutes"] is not None else None
        end = self.total_steps
        bar = tqdm(total=end, initial=self.step, disable=not progress, unit="step", dynamic_ncols=True,
                   desc=f"train {self.framework}", leave=False)
        b.reset_peak_memory()
        b.synchronize()
        started = time.perf_counter()
        last_log, pending, first_step_s = time.perf_counter(), [], None
        window_seconds = self.window_seconds  # the open window's seconds in earlier sessions
        steps_this_call = 0

        def budget_left() -> bool:  # the ranks of a data-parallel run agree on when time is up
            return (end is None or self.step < end) and (deadline is None or not self._agreed(
                time.monotonic() >= deadline))

        while (budget_left() and not self._stopped() and self.pruned_reason is None
               and steps_this_call != stop_after):
            loss, grad_norm = self.train_step()
            pending.append(loss)
            steps_this_call += 1
            if first_step_s is None:
                b.synchronize()
                first_step_s = time.perf_counter() - started
            last = not budget_left()  # decided once: the last step logs and checkpoints
            if self.step % train["log_every"] == 0 or last:  # the budget's end closes a window
                b.synchronize()
                now = time.perf_counter()
                self.losses.add(b.item(x) for x in pending)
                mean_loss, n, trailing = self.losses.close_window()
                if not math.isfinite(mean_loss):
                    raise TrainingDiverged(f"loss became {mean_loss} at step {self.step}")
                seconds = window_seconds + now - last_log
                record = {"step": self.step, "loss": mean_loss, "trailing_loss": trailing,
                          "lr": _lr_at(train, self.step - 1), "grad_norm": b.item(grad_norm),
                          "step_time": seconds / n, "img_s": n * train["batch_size"] / seconds,
                          "peak_mem": b.peak_memory_bytes(), "elapsed": self.elapsed_before + now - started}
                if self.world.writes:
                    jsonfiles.append_jsonl(metrics_path, [record])
                bar.update(len(pending))
                bar.set_postfix(loss=f"{trailing:.4f}")
                pending, last_log, window_seconds = [], now, 0.0
                self.pruned_reason = self._stop_request()  # a stat per log step
            if self.world.writes and self.evaluator.due(self.step):  # FID during training, off the training clock
                paused = self.evaluator.run(self, self.elapsed_before + time.perf_counter() - started)
                started, last_log = started + paused, last_log + paused
            if self.step % train["checkpoint_every"] == 0 or last:
                self._checkpoint_now(pending, started, last_log, window_seconds)
            if last:
                break
        bar.close()
        if self.step != self._saved_step:  # stopped early (stop_after or a signal)
            self._checkpoint_now(pending, started, last_log, window_seconds)
        self.first_step_s = first_step_s

    def _agreed(self, flag: bool) -> bool:
        """``flag`` on any rank (a collective: every rank asks at the same point); ``flag`` alone
        in one process."""
        return self.backend.any_over_ranks(flag) if self.world.size > 1 else flag

    def _stopped(self) -> bool:
        """Whether a signal stops training now (on every rank once one rank got it)."""
        signalled = self._stop_signal is not None  # read once: a signal may land at any moment
        if not self._agreed(signalled):
            return False
        if self._stop_signal is None:
            self._stop_signal = signal.SIGTERM  # another rank was signalled: stop at the same step
        return True

    def _stop_request(self) -> str | None:
        """The reason of a stop request in the run folder (a search pruned the run), on every rank
        once rank 0 has seen it."""
        reason = rundir.stop_requested(self.run_dir) if self.world.writes else None
        if not self._agreed(reason is not None):
            return None
        return reason or "stop requested"  # other ranks: rank 0 holds the reason and writes it

    def _checkpoint_now(self, pending: list, started: float, last_log: float, window_seconds: float) -> None:
        """Checkpoint with the open window's losses moved from ``pending`` (device values) into the log."""
        b = self.backend
        b.synchronize()
        now = time.perf_counter()
        self.losses.add(b.item(x) for x in pending)
        pending.clear()
        if self.world.writes:  # every rank synchronised above: no rank-0-only Jittor call waits on another
            self.save_checkpoint(self.elapsed_before + now - started, window_seconds + now - last_log)
        self._saved_step = self.step

    @contextlib.contextmanager
    def _signals_stop_training(self):
        """SIGINT/SIGTERM/SIGUSR1/SIGUSR2 end the loop after the current step (a second one stops at once)."""
        keep_handlers_out_of_forks()
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def stop(signum, frame):
            if self._stop_signal is not None:
                raise KeyboardInterrupt
            self._stop_signal = signum

        old = {s: signal.signal(s, stop) for s in STOP_SIGNALS}
        try:
            yield
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)

    def partial_summary(self) -> dict:
        """The summary of a run stopped before its budget (resumable)."""
        summary = {"status": "partial", "step": self.step}
        if self.world.writes:
            rundir.write_summary(self.run_dir, summary)
        return summary

    def pruned_summary(self) -> dict:
        """The summary of a run a search pruned: its figures so far, final like a done run's."""
        summary = {**summarize(self.run_dir, self.spec, self.framework), "status": "pruned", "step": self.step,
                   "reason": self.pruned_reason}
        if self.world.writes:
            rundir.write_summary(self.run_dir, summary)
        return summary

    def finish(self) -> dict:
        """Write the EMA weights, the sample grid and the summary of a finished run."""
        self.backend.synchronize()
        if not self.world.writes:
            return {"status": "done", "step": self.step}
        checkpoints.save_arrays(self.run_dir / rundir.EMA, get_weights(self.ema))
        sample_from = self.ema if self.spec["sample"]["ema"] else self.model
        images, timing = generate(sample_from, self.spec, self.spec["sample"]["num_images"], seed=self.stream_seed)
        save_png(grid(to_uint8(images)), self.run_dir / rundir.GRID)
        summary = summarize(self.run_dir, self.spec, self.framework)
        summary.update({"status": "done", "step": self.step, "sample_img_s": timing["sample_img_s"],
                        "params": count_parameters(self.model), "device": self.backend.device_name(),
                        "gflops": forward_gflops(self.spec["model"]),
                        "first_step_s": getattr(self, "first_step_s", None)})
        rundir.write_summary(self.run_dir, summary)
        return summary


def summarize(run_dir: Path, spec: dict, framework: str) -> dict:
    """Loss and speed figures from a run's metrics records."""
    records = jsonfiles.read_metrics(Path(run_dir) / rundir.METRICS)
    timed = [r for r in records if r.get("img_s")]  # not the score records
    speeds = [r["img_s"] for r in timed[1:]] or [r["img_s"] for r in timed]
    mems = [r["peak_mem"] for r in records if r.get("peak_mem") is not None]
    return {
        "framework": framework,
        "final_loss": final_loss(records),
        "best_loss": best_loss(records),
        "train_img_s": float(np.median(speeds)) if speeds else None,
        "peak_mem": max(mems) if mems else None,
        "train_s": records[-1].get("elapsed") if records else None,
    }


def run_config(spec: dict, framework: str, seed: int, identity: dict | None = None) -> dict:
    """The run's ``config.json``: the resolved spec and the run's identity."""
    return {"spec": spec, "run": {"framework": framework, "seed": seed, **(identity or {})}}


def train_run(spec, run_dir, framework: str = "torch", *, seed: int | None = None, progress: bool = True,
              identity: dict | None = None, stop_after: int | None = None, nproc: int = 1) -> dict:
    """Train (or resume) the run in ``run_dir`` under its lock and return its summary.

    A done run is left as it is (its summary is returned).  A model whose blocks refuse their
    options, a run folder holding another config (unless that run failed before its first step
    and holds no checkpoint: then the new config replaces it), or one held by another process,
    is refused before anything is written.  A failure is
    recorded in ``summary.json`` (status ``failed`` and the reason; for a done run in
    ``events.jsonl``) and re-raised.  With ``nproc > 1`` this process launches ``nproc`` ranks
    that train the run data-parallel (see :mod:`unetlab.run.distributed`) and waits for them; a run
    resumes under any ``nproc``.
    """
    run_dir = Path(run_dir)
    spec = resolve_run_spec(spec)
    seed = spec["train"]["seed"] if seed is None else seed
    world = distributed.world()
    if nproc > 1:  # refused before anything is written
        if world.distributed:
            raise UnetlabError("a rank of a data-parallel run cannot launch ranks of its own")
        distributed.check_batch_divides(spec["train"]["batch_size"], nproc)
        distributed.check_launcher(framework)
    check_model_builds(spec["model"], framework)  # a block refusing its options: before any file is written
    with (distributed.launcher_lock(run_dir) if world.distributed else runlock.hold(run_dir)):
        if world.writes:
            try:
                rundir.claim_config(run_dir, run_config(spec, framework, seed, identity))
            except rundir.ConfigChanged as exc:
                rundir.record_event(run_dir, "rerun refused", reason=str(exc))
                raise
        state = rundir.read_state(run_dir)
        if state.status in (rundir.Status.DONE, rundir.Status.PRUNED):
            return state.summary
        if nproc > 1:
            return _train_ranks(run_dir, framework, nproc, progress, stop_after)
        trainer = None
        try:
            trainer = Trainer(spec, run_dir, framework, seed=seed, identity=identity)
            return trainer.run(progress=progress, stop_after=stop_after)
        except (Exception, KeyboardInterrupt) as exc:
            if not world.writes:
                raise
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
            step = trainer.step if trainer is not None else rundir.last_step(run_dir)
            rundir.write_summary(run_dir, {"status": status, "reason": reason, "step": step})
            raise


def _train_ranks(run_dir: Path, framework: str, nproc: int, progress: bool, stop_after: int | None) -> dict:
    """Launch ``nproc`` ranks on the run (whose lock and config this process holds) and return the
    summary rank 0 wrote; a failure or an interruption is raised as :func:`train_run` raises it."""
    log = run_dir / RANKS_LOG
    start = log_size(log)
    args = ["unetlab.run.rank", str(run_dir)] + (["--progress"] if progress else [])
    args += ["--stop-after", str(stop_after)] if stop_after is not None else []
    try:
        rc = distributed.launch_ranks(framework, nproc, args, log=log)
    except KeyboardInterrupt:
        _record_ranks_end(run_dir, "interrupted", "KeyboardInterrupt: the ranks were stopped")
        raise
    summary = rundir.read_state(run_dir).summary
    if summary.get("status") in ("done", "pruned") or (rc == 0 and summary.get("status") == "partial"):
        return summary
    summary = _record_ranks_end(run_dir, "failed", f"the ranks exited with status {rc}")
    if summary["status"] == "interrupted":
        raise KeyboardInterrupt(summary.get("reason", ""))
    raise tool_error(f"{framework} on {nproc} processes: {summary.get('reason')}", read_log(log, start), log,
                     saved=True, error=RanksFailed)


def _record_ranks_end(run_dir: Path, status: str, reason: str) -> dict:
    """The summary after the ranks ended: rank 0's own when it recorded how, else ``status``."""
    summary = rundir.read_state(run_dir).summary
    if summary.get("status") in ("failed", "interrupted", "done", "pruned"):
        return summary
    summary = {"status": status, "reason": reason, "step": rundir.last_step(run_dir)}
    rundir.write_summary(run_dir, summary)
    return summary
