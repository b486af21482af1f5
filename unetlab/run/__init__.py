"""A run's life: its folder's state and summary, its lock, its checkpoints, the trainer, the worker
that a sweep starts for it, the data-parallel ranks and the evaluator."""
