"""The names of a run folder's files.

Layout (every write is atomic: a temporary file renamed into place, see :mod:`unetlab.files`)::

    config.json          the resolved spec plus the run's identity (framework, seed, ...)
    .config.sha256       digest of config.json as written (a later hand edit shows as ``changed``)
    metrics.jsonl        one JSON record per logged step
    summary.json         status, reason, figures (written only by :func:`unetlab.run.rundir.write_summary`)
    events.jsonl         refused or failed reruns of a finished run, one record each
    checkpoints/last.npz model, EMA and optimizer state at the last checkpoint (resumable)
    checkpoints/ema.npz  EMA weights at the end (framework-neutral: loads in either framework)
    samples.png          a grid of samples from the EMA weights
    .lock                the run's lock (see :mod:`unetlab.run.runlock`)
    .lock.taking/        exists only while a process takes the lock (a cross-host mutex)
    stop-request         written by a search to prune the run: the trainer stops at its next log step
"""

CONFIG, METRICS, SUMMARY = "config.json", "metrics.jsonl", "summary.json"
LAST, EMA, GRID = "checkpoints/last.npz", "checkpoints/ema.npz", "samples.png"
EVENTS, CONFIG_DIGEST = "events.jsonl", ".config.sha256"
#: A file whose presence asks the trainer to stop at its next log step, checkpointed, as ``pruned``
#: (a search writes it; its text is the reason).
STOP_REQUEST = "stop-request"

#: An ablation folder's record of its adaptive-seed rounds (one look per line).
ADAPTIVE_AUDIT = "adaptive.jsonl"
