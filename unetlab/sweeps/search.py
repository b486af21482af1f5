"""Hyperparameter search inside an ablation: Optuna's ask/tell loop driving ordinary runs.

There is one study per variant x framework, named ``<ablation>/<variant>-<framework>``, kept in
the Optuna journal file ``RUNS/<ablation>/search.journal`` (no server; safe on shared storage)
or in the database ``--storage URL`` names.  Trial N of a study is the run folder
``<variant>-tN-<framework>-s<seed>``: validated, locked, trained and resumed like every run, by
:func:`unetlab.sweeps.sweep.run_sweep` in a slot of the sweep's pool (so ``--gpus`` and any engine
option apply to trials too).

The search process alone talks to Optuna.  It polls each running trial's ``metrics.jsonl``,
reports the pruner's metric at every logged step and, when the pruner says so, writes a stop
request into the run folder: the trainer stops at its next log step with a checkpoint and the
status ``pruned``, wherever it runs.

Counting: ``trials`` is the number of trials of a study that finished, were pruned, failed or
are running.  Trials are asked under a file lock beside the runs, so two sweepers on one study
never exceed it, and a rerun adds only what is missing.  A trial left running by a killed
sweeper (its run folder no longer locked), or whose worker was killed, is resumed as the same
trial, with the same values, by the next run of the search.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import math
import os
from pathlib import Path
import signal
import threading
import time

from ..errors import UnetlabError
from ..files import flocked
from ..reports.table import run_row
from ..run import jsonfiles, rundir, runlock
from ..run.protocol import lock_run
from ..run.signals import signals_interrupt
from .ablation import Ablation, Run, trial_run
from .pool import Pool, Slots
from .search_optuna import counted, distributions, open_study, sampler_for, storage_for, study_name
from .sweep import run_sweep

#: Held while a sweeper counts a study's trials and asks for the next one.
COUNT_LOCK = ".search.lock"
#: Seconds between two looks at the running trials' metrics.
POLL_S = 0.5


# -- one trial in flight -----------------------------------------------------------------------

@dataclass
class Lane:
    """A trial being run: its run, the run's lock held by this sweeper, and how it ends."""

    trial: object            # optuna.trial.Trial
    run: Run
    run_dir: Path
    lock: object
    reported: set = field(default_factory=set)
    stop_sent: bool = False
    taken: list = field(default_factory=list)
    finished: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class Study:
    """One variant x framework's study: claims trials, reports metrics, tells outcomes."""

    def __init__(self, ablation: Ablation, template: Run, root: Path, storage, echo=print):
        self.search, self.template, self.root, self.echo = ablation.search, template, Path(root), echo
        self.study = open_study(template, self.search, storage)
        self.dists = distributions(self.search)
        self.died: set = set()  # trials whose worker was killed here: left for the next run of the search

    # -- claiming --------------------------------------------------------------------------
    def params_of(self, stored: dict) -> dict:
        """Spec values of the parameters Optuna stored (in the space's order)."""
        return {d.key: d.value_of(stored[d.key]) for d in self.search.space if d.key in stored}

    def claim(self, mine: set) -> Lane | None:
        """The next trial for this sweeper: a running trial nobody runs (resumed), else a new one
        while the study has fewer than ``trials``; None when there is nothing left to start."""
        from optuna.trial import Trial, TrialState

        self.root.mkdir(parents=True, exist_ok=True)
        with flocked(self.root / COUNT_LOCK):
            for frozen in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                if frozen.number in mine or frozen.number in self.died:
                    continue
                run = trial_run(self.template, frozen.number, self.params_of(frozen.params))
                lock = lock_run(self.root / run.name, "unetlab search", self.echo)
                if lock is not None:
                    trial = Trial(self.study, frozen._trial_id)  # Optuna's id of that trial
                    return Lane(trial, run, self.root / run.name, lock, set(frozen.intermediate_values))
            while counted(self.study) < self.search.trials:
                self.study.sampler = sampler_for(self.search, len(self.study.get_trials(deepcopy=False)))
                trial = self.study.ask(self.dists)
                try:
                    run = trial_run(self.template, trial.number, self.params_of(trial.params))
                except UnetlabError as exc:  # these values together make an invalid spec: never started
                    self.echo(f"{study_name(self.template)} trial {trial.number}: not run: {exc}")
                    trial.set_user_attr("reason", str(exc))
                    self.study.tell(trial, state=TrialState.FAIL)
                    continue
                trial.set_user_attr("run", run.name)
                lock = runlock.try_lock(self.root / run.name, "unetlab search")
                if lock is None:
                    raise UnetlabError(f"{self.root / run.name}: a new trial's folder is in use by "
                                       f"{runlock.describe_holder(self.root / run.name)}")
                return Lane(trial, run, self.root / run.name, lock)
        return None

    # -- while it runs ---------------------------------------------------------------------
    def poll(self, lane: Lane) -> None:
        """Report the pruner's metric at each newly logged step; ask the run to stop if pruned."""
        pruning = self.search.pruning
        if lane.stop_sent:
            return
        new = []
        for record in jsonfiles.read_metrics(lane.run_dir / rundir.METRICS):
            value, step = record.get(pruning.metric), record.get("step")
            if isinstance(value, (int, float)) and math.isfinite(value) and isinstance(step, int) \
                    and step not in lane.reported:
                lane.trial.report(float(value), step)
                lane.reported.add(step)
                new.append(step)
        if new and pruning.kind != "none" and lane.trial.should_prune():
            rundir.request_stop(lane.run_dir, f"{pruning.describe()} at step {max(new)}")
            lane.stop_sent = True

    # -- when it ends ----------------------------------------------------------------------
    def conclude(self, lane: Lane) -> str:
        """Tell Optuna how the trial's run ended; returns that status (a trial that did not end
        -- interrupted, running elsewhere -- stays running in the study and is resumed later)."""
        from optuna.trial import TrialState

        try:
            self.poll(lane)
            state = rundir.read_state(lane.run_dir)
            status = str(state.status)
            if state.status == rundir.Status.DONE:
                value = run_row(lane.run_dir).get(self.search.metric)
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self.study.tell(lane.trial, float(value))
                else:
                    lane.trial.set_user_attr("reason", f"the run has no {self.search.metric}")
                    self.study.tell(lane.trial, state=TrialState.FAIL)
                    status = "failed"
            elif state.status == rundir.Status.PRUNED:
                self.study.tell(lane.trial, state=TrialState.PRUNED)
            elif state.status == rundir.Status.FAILED and state.reason.startswith("worker died"):
                self.died.add(lane.trial.number)  # killed from outside (e.g. out of memory), not its own failure
                status = "interrupted"
            elif state.status in (rundir.Status.FAILED, rundir.Status.CHANGED, rundir.Status.CORRUPT) \
                    and lane.error is None:
                lane.trial.set_user_attr("reason", state.reason)
                self.study.tell(lane.trial, state=TrialState.FAIL)
            return status
        finally:
            lane.lock.release()

    def describe(self) -> str:
        """``s/a-torch: 8 trials (5 complete, 3 pruned); best t2 final loss 0.0213``."""
        from collections import Counter

        trials = self.study.get_trials(deepcopy=False)
        states = Counter(t.state.name.lower() for t in trials)
        text = f"study {self.study.study_name}: {len(trials)} trials ({', '.join(f'{n} {s}' for s, n in states.items())})"
        if states.get("complete"):
            best = self.study.best_trial
            values = [f"{k}={format(v, '.4g') if isinstance(v, float) else v}" for k, v in best.params.items()]
            text += f"; best t{best.number}: {self.study.user_attrs['metric']} {best.value:.4g} " + " ".join(values)
        return text


# -- the search --------------------------------------------------------------------------------

def _lane_pool(pool: Pool, taken: list[int]) -> Pool:
    """A pool of exactly the slots ``taken``, for one trial's sweep."""
    gpus = tuple(pool.gpus[i] for i in taken) if pool.on_gpus else ()
    return Pool(gpus, len(taken), pool.threads, pool.pin)


def _start(lane: Lane, ablation: Ablation, root: Path, pool: Pool, echo, engine_options: dict) -> None:
    one = Ablation(ablation.name, (lane.run,), ablation.source)

    def go():
        try:
            run_sweep(one, root, progress=False, echo=echo, pool=_lane_pool(pool, lane.taken), **engine_options)
        except BaseException as exc:  # noqa: BLE001 - raised again by the search's own thread
            lane.error = exc
        finally:
            lane.finished.set()

    threading.Thread(target=go, name=lane.run.name, daemon=True).start()


def _interrupt(lanes: dict) -> None:
    """Stop every running trial's worker (SIGINT: it checkpoints) and wait for them."""
    signalled: set = set()
    while not all(lane.finished.is_set() for lane in lanes.values()):
        for lane in lanes.values():
            for pid in runlock.holders(lane.run_dir):
                if pid != os.getpid() and pid not in signalled:
                    signalled.add(pid)
                    try:
                        os.kill(pid, signal.SIGINT)
                    except ProcessLookupError:
                        pass
        time.sleep(0.1)
    for lane in lanes.values():
        lane.lock.release()


@dataclass
class SearchResult:
    outcome: dict = field(default_factory=dict)  # run name -> done | pruned | failed | interrupted ...
    studies: list = field(default_factory=list)  # one line per study

    @property
    def failed(self) -> list[str]:
        return [k for k, v in self.outcome.items() if v == "failed"]


def run_search(ablation: Ablation, root: Path, progress: bool = True, echo=print, pool: Pool | None = None,
               storage: str | None = None, **engine_options) -> SearchResult:
    """Run the search of ``ablation`` under ``root``: each study (variant x framework) in turn,
    up to ``search.parallel`` trials at once in ``pool``'s slots.  ``engine_options`` go to
    :func:`unetlab.sweeps.sweep.run_sweep` with every trial."""
    search = ablation.search
    if search is None:
        raise UnetlabError(f"{ablation.name}: no sampled search in this ablation")
    root, pool = Path(root), pool or Pool((), 1, None, pin=False)
    store = storage_for(root, storage)
    result = SearchResult()
    with signals_interrupt():
        for template in ablation.runs:
            wanted = pool.slots_for(template.spec["resources"]["gpus"])
            if wanted > pool.size:
                raise UnetlabError(f"{study_name(template)}: resources.gpus is {wanted} but the pool has only "
                                   f"{pool.describe()} (give more with --gpus)")
            study = Study(ablation, template, root, store, echo)
            _run_study(study, ablation, root, pool, wanted, echo, engine_options, result)
            result.studies.append(study.describe())
    return result


def _run_study(study: Study, ablation: Ablation, root: Path, pool: Pool, wanted: int, echo,
               engine_options: dict, result: SearchResult) -> None:
    slots, lanes, exhausted = Slots(pool.size), {}, False
    try:
        while True:
            for number, lane in list(lanes.items()):
                if lane.finished.is_set():
                    result.outcome[lane.run.name] = study.conclude(lane)
                    slots.give_back(lane.taken)
                    del lanes[number]
                    if lane.error is not None:
                        raise lane.error
                else:
                    study.poll(lane)
            while not exhausted and len(lanes) < study.search.parallel:
                taken = slots.take(wanted, timeout=0)
                if taken is None:
                    break
                lane = study.claim(set(lanes))
                if lane is None:
                    slots.give_back(taken)
                    exhausted = True
                    break
                lane.taken = taken
                if rundir.run_status(lane.run_dir) in (rundir.Status.DONE, rundir.Status.PRUNED):
                    lane.finished.set()  # ended before its sweeper could say so: told now
                else:
                    _start(lane, ablation, root, pool, echo, engine_options)
                lanes[lane.trial.number] = lane
            if exhausted and not lanes:
                return
            time.sleep(POLL_S)
    except BaseException:
        _interrupt({n: lane for n, lane in lanes.items()})
        raise
