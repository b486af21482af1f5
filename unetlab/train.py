"""DDPM training, written once against the framework backends.

Everything random in a step -- the batch, its flips, the timesteps, the noise (with
``train.noise: host``) and the framework's own RNG (dropout) -- is seeded from
``(seed, step)``, so a resumed run repeats exactly what an uninterrupted one does.  The
checkpoint also holds the losses of the open log window, so the resumed run's metrics records
are the uninterrupted run's too.  SIGINT, SIGTERM, SIGUSR1 and SIGUSR2 (a cluster's warning before
preemption or the time limit) stop training after the current step with a checkpoint at that step.
"""
from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
import warnings
from pathlib import Path

import numpy as np

from . import rundir
from .data import Batches, DeviceBatches, load_dataset
from .diffusion import make_schedule, sample_timesteps, training_loss
from .errors import UnetlabError
from .evaluator import PeriodicEvaluator
from .frameworks import backend_for, check_run_section, ops_for
from .loss_log import LossLog, best_loss, final_loss
from .model import build_model
from .signals import STOP_SIGNALS, keep_handlers_out_of_forks
from .spec import budget_steps, resolve_run_spec
from .weights import count_parameters, get_weights, set_weights


class TrainingDiverged(UnetlabError):
    """The loss became NaN or infinite."""


def _lr_at(train: dict, step: int) -> float:
    if train["warmup_steps"] > 0:
        return train["lr"] * min(1.0, (step + 1) / train["warmup_steps"])
    return train["lr"]


class Trainer:
    """One run: model, EMA, optimizer and data, stepping and checkpointing into ``run_dir``."""

    def __init__(self, spec, run_dir, framework: str, seed: int | None = None, identity: dict | None = None):
        self.spec = resolve_run_spec(spec)
        self.train = self.spec["train"]
        self.seed = self.train["seed"] if seed is None else seed
        self.framework = framework
        check_run_section(framework, "train", self.train)
        self.backend = backend_for(framework)
        if self.train["precision"] != "fp32" and self.backend.device_name() == "cpu":
            warnings.warn(f"train.precision {self.train['precision']} on the CPU: mixed precision is "
                          f"meant for GPUs (Jittor fp16 measured about 500x slower than fp32 on a CPU)",
                          stacklevel=2)
        self.ops = ops_for(framework)
        self.run_dir = Path(run_dir)
        rundir.claim_config(self.run_dir, run_config(self.spec, framework, self.seed, identity))
        m = self.spec["model"]
        self.images = load_dataset(self.spec["data"], m["image_size"], m["in_channels"], self.seed)
        self.batches = Batches(self.images, self.train["batch_size"], self.seed, self.spec["data"]["flip"])
        # with device noise, the images stay on the device too: nothing image-sized is copied per step
        self.device_batches = (DeviceBatches(self.batches, self.backend, self.ops)
                               if self.train["noise"] == "device" else None)
        self.total_steps = budget_steps(self.train, len(self.images))
        self.betas = make_schedule(self.spec["diffusion"]).betas
        self.model = build_model(m, framework, seed=self.seed)
        self.ema = build_model(m, framework, seed=self.seed)
        self.backend.set_train(self.ema, False)
        self.forward = self.backend.fast_forward(
            self.model, self.train["compile_mode"] if self.train["compile"] else None, self.train["channels_last"])
        self.opt = self.backend.Optimizer(self.model, self.train["optimizer"], self.train["lr"],
                                          self.train["betas"], self.train["adam_eps"], self.train["weight_decay"],
                                          self.train["grad_clip"])
        self.evaluator = PeriodicEvaluator(self.spec, self.images)
        self.step = 0
        self.elapsed_before = 0.0  # training seconds of earlier sessions of this run
        self.losses = LossLog()
        self.window_seconds = 0.0  # seconds spent in the open log window before this session
        self._stop_signal = None
        self._resume()
        self._saved_step = self.step

    # -- run folder -------------------------------------------------------------------------
    def _resume(self) -> None:
        last = self.run_dir / rundir.LAST
        if not last.is_file():
            rundir.keep_records_until(self.run_dir / rundir.METRICS, 0)
            return
        arrays = rundir.load_arrays(last)
        set_weights(self.model, rundir.split_prefix(arrays, "model"), f"checkpoint {last}")
        set_weights(self.ema, rundir.split_prefix(arrays, "ema"), f"checkpoint {last}")
        self.opt.load(rundir.split_prefix(arrays, "opt"))
        self.step = int(arrays["step"])
        self.losses.load(rundir.split_prefix(arrays, "log"))
        rundir.keep_records_until(self.run_dir / rundir.METRICS, self.step)
        kept = rundir.read_jsonl(self.run_dir / rundir.METRICS)
        self.elapsed_before = (float(arrays["log/elapsed"]) if "log/elapsed" in arrays
                               else kept[-1]["elapsed"] if kept else 0.0)
        self.window_seconds = float(arrays.get("log/window_seconds", 0.0))

    def save_checkpoint(self, elapsed: float | None = None, window_seconds: float = 0.0) -> None:
        """Write ``checkpoints/last.npz`` at the current step (with the open log window's losses)."""
        arrays = {"step": np.asarray(self.step)}
        arrays.update(rundir.with_prefix("log", self.losses.state()))
        arrays["log/elapsed"] = np.asarray(self.elapsed_before if elapsed is None else elapsed)
        arrays["log/window_seconds"] = np.asarray(window_seconds)
        arrays.update(rundir.with_prefix("model", get_weights(self.model)))
        arrays.update(rundir.with_prefix("ema", get_weights(self.ema)))
        arrays.update(rundir.with_prefix("opt", self.opt.state()))
        rundir.save_arrays(self.run_dir / rundir.LAST, arrays)

    # -- one step ---------------------------------------------------------------------------
    def _batch(self, step: int):
        """(x0, t, noise) of step ``step``: images and noise as tensors, timesteps on the host."""
        b = self.backend
        rng = np.random.default_rng([self.seed, 4, step])
        t = sample_timesteps(rng, self.train["batch_size"], self.spec["diffusion"]["T"],
                             self.spec["diffusion"]["timestep_sampling"])
        if self.device_batches is None:
            x0 = self.batches(step)
            noise = rng.standard_normal(x0.shape, dtype=np.float32)
            return b.tensor(x0), t, b.tensor(noise)
        x0 = self.device_batches(step)
        return x0, t, b.randn_like(x0)

    def _network(self, x_t, t):
        with self.backend.autocast(self.train["precision"]):
            return self.forward(x_t, t)

    def train_step(self):
        """One optimizer step; returns (loss tensor, grad-norm tensor)."""
        b, diffusion = self.backend, self.spec["diffusion"]
        b.seed(self.seed * 1_000_003 + self.step)
        x0, t, noise = self._batch(self.step)
        lr = _lr_at(self.train, self.step)
        self.opt.set_lr(lr)
        loss = training_loss(self._network, x0, t, noise, betas=self.betas, loss=diffusion["loss"],
                             prediction=diffusion["prediction"])
        grad_norm = self.opt.step(loss)
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
        return self.finish() if end is None or self.step >= end else self.partial_summary()

    def _loop(self, progress: bool, stop_after: int | None) -> None:
        from tqdm.auto import tqdm

        b, train = self.backend, self.train
        metrics_path = self.run_dir / rundir.METRICS
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

        def budget_left() -> bool:
            return (end is None or self.step < end) and (deadline is None or time.monotonic() < deadline)

        while budget_left() and self._stop_signal is None and steps_this_call != stop_after:
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
                rundir.append_jsonl(metrics_path, [record])
                bar.update(len(pending))
                bar.set_postfix(loss=f"{trailing:.4f}")
                pending, last_log, window_seconds = [], now, 0.0
            if self.evaluator.due(self.step):  # FID during training, off the training clock
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

    def _checkpoint_now(self, pending: list, started: float, last_log: float, window_seconds: float) -> None:
        """Checkpoint with the open window's losses moved from ``pending`` (device values) into the log."""
        b = self.backend
        b.synchronize()
        now = time.perf_counter()
        self.losses.add(b.item(x) for x in pending)
        pending.clear()
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
        rundir.write_summary(self.run_dir, summary)
        return summary

    def finish(self) -> dict:
        """Write the EMA weights, the sample grid and the summary of a finished run."""
        from .metrics.model_report import forward_gflops
        from .sampling import generate, grid, save_png, to_uint8

        rundir.save_arrays(self.run_dir / rundir.EMA, get_weights(self.ema))
        sample_from = self.ema if self.spec["sample"]["ema"] else self.model
        images, timing = generate(sample_from, self.spec, self.spec["sample"]["num_images"], seed=self.seed)
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
    records = rundir.read_jsonl(Path(run_dir) / rundir.METRICS)
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
              identity: dict | None = None, stop_after: int | None = None) -> dict:
    """Train (or resume) the run in ``run_dir`` under its lock and return its summary.

    A done run is left as it is (its summary is returned).  A run folder holding another
    config, or held by another process, is refused before anything is written.  A failure is
    recorded in ``summary.json`` (status ``failed`` and the reason; for a done run in
    ``events.jsonl``) and re-raised.
    """
    run_dir = Path(run_dir)
    spec = resolve_run_spec(spec)
    seed = spec["train"]["seed"] if seed is None else seed
    with rundir.hold(run_dir):
        try:
            rundir.claim_config(run_dir, run_config(spec, framework, seed, identity))
        except rundir.ConfigChanged as exc:
            rundir.record_event(run_dir, "rerun refused", reason=str(exc))
            raise
        state = rundir.read_state(run_dir)
        if state.status == rundir.Status.DONE:
            return state.summary
        trainer = None
        try:
            trainer = Trainer(spec, run_dir, framework, seed=seed, identity=identity)
            return trainer.run(progress=progress, stop_after=stop_after)
        except (Exception, KeyboardInterrupt) as exc:
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
            step = trainer.step if trainer is not None else rundir.last_step(run_dir)
            rundir.write_summary(run_dir, {"status": status, "reason": reason, "step": step})
            raise
