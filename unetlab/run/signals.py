"""Signal handlers that stay in the process that installed them.

unetlab's workers and trainer turn SIGINT/SIGTERM/SIGUSR1/SIGUSR2 into a clean stop (checkpoint, status).  A
child forked from such a process -- Jittor's compiler pool is one -- would inherit the handler:
when the pool is shut down with SIGTERM the child would then raise or set a flag instead of
exiting, and the parent would wait for it forever.  After a fork, children get the default
handling back.
"""
from __future__ import annotations

import os
import signal
from contextlib import contextmanager

_registered = False


def _defaults_in_child() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGUSR1, signal.SIG_DFL)
    signal.signal(signal.SIGUSR2, signal.SIG_DFL)


def keep_handlers_out_of_forks() -> None:
    """Make every child this process forks from now on start with default SIGINT/SIGTERM
    handling (idempotent; ``os.fork`` and multiprocessing's fork start method)."""
    global _registered
    if not _registered:
        os.register_at_fork(after_in_child=_defaults_in_child)
        _registered = True


#: The signals that stop a worker's training cleanly: Ctrl-C, a kill, and a cluster's warning of
#: preemption or of the time limit (Slurm's ``--signal=USR1@N``; submitit asks for USR2).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


@contextmanager
def signals_interrupt():
    """SIGINT and SIGTERM raise KeyboardInterrupt inside the block (also when the process was
    started with SIGINT ignored, e.g. in the background of a script); outside the main thread,
    where no handler can be set, the block runs as it is."""
    def handler(signum, frame):
        raise KeyboardInterrupt
    try:
        old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for s, previous in old.items():
            signal.signal(s, previous)
