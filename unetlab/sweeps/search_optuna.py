"""The Optuna objects of a search, made from its ``search:`` section: storage, study, sampler, pruner.

A study is named ``<ablation>/<variant>-<framework>`` and lives in the journal file
``RUNS/<ablation>/search.journal`` unless a database URL is given.  Samplers are seeded by the
search's seed and the number of the trial they ask for.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import UnetlabError
from .ablation import Run
from .search_spec import SearchSpec, metric_label, require_optuna

JOURNAL = "search.journal"


def storage_for(root: Path, url: str | None = None):
    """The study storage: the database ``url``, or the journal file ``root/search.journal``."""
    optuna = require_optuna()
    if url:
        try:
            return optuna.storages.RDBStorage(url)
        except Exception as exc:  # noqa: BLE001 - SQLAlchemy's many errors, as one line
            raise UnetlabError(f"--storage {url}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    Path(root).mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(Path(root) / JOURNAL)))


def study_name(template: Run) -> str:
    return f"{template.ablation}/{template.variant}-{template.framework}"


def distributions(search: SearchSpec) -> dict:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out = {}
    for dim in search.space:
        if dim.kind == "choice":
            out[dim.key] = CategoricalDistribution(dim.labels())
        elif dim.kind == "int_uniform":
            out[dim.key] = IntDistribution(*dim.values)
        else:
            out[dim.key] = FloatDistribution(*dim.values, log=dim.kind == "log_uniform")
    return out


def sampler_for(search: SearchSpec, trial_number: int = 0):
    """The sampler that asks for trial ``trial_number``, seeded by the search's seed and that
    number: a resumed or shared study never repeats a draw, and a serial search is reproducible."""
    import optuna

    seed = search.seed * 1_000_003 + trial_number
    if search.method == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def pruner_for(search: SearchSpec):
    import optuna

    p = search.pruning
    if p.kind == "asha":  # asynchronous successive halving: rungs at min_steps * factor**k
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=p.min_steps, reduction_factor=p.reduction_factor)
    if p.kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=p.startup_trials, n_warmup_steps=p.min_steps)
    return optuna.pruners.NopPruner()


def open_study(template: Run, search: SearchSpec, storage):
    """Create or load the study of ``template``'s variant x framework."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    direction = "minimize" if search.mode == "min" else "maximize"
    study = optuna.create_study(study_name=study_name(template), storage=storage, sampler=sampler_for(search),
                                pruner=pruner_for(search), direction=direction, load_if_exists=True)
    if study.direction.name.lower() != direction:
        raise UnetlabError(f"study {study.study_name} was made to {study.direction.name.lower()} its objective; "
                           f"the ablation now says mode {search.mode} (use another storage or ablation name)")
    attrs = {"metric": metric_label(search.metric), "mode": search.mode, "method": search.method,
             "pruner": search.pruning.describe(), "ablation": template.ablation, "variant": template.variant,
             "framework": template.framework}
    for key, value in attrs.items():
        if study.user_attrs.get(key) != value:
            study.set_user_attr(key, value)
    return study


def counted(study) -> int:
    """Trials that count toward ``trials``: finished, pruned, failed or running."""
    from optuna.trial import TrialState

    return sum(t.state != TrialState.WAITING for t in study.get_trials(deepcopy=False))


def existing_studies(root: Path, storage: str | None) -> dict:
    """Study name -> its trials, read without creating anything (a dry run writes nothing)."""
    import optuna

    if storage is None and not (root / JOURNAL).is_file():
        return {}
    store = storage_for(root, storage)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return {name: optuna.load_study(study_name=name, storage=store).get_trials(deepcopy=False)
            for name in optuna.get_all_study_names(store)}
