"""Import Jittor once per process, after :func:`jittor_setup.prepare` has set its environment."""
from __future__ import annotations

import os
import signal
import sys
import threading

from ...errors import UnetlabError
from . import setup as jittor_setup

_jt = None


def _restore_sigchld() -> None:
    """Undo Jittor's SIGCHLD handler, which ends the whole process ("quick exit") whenever any
    child process is killed by a signal -- a sweep's worker, a test's subprocess.  unetlab
    uses no Jittor data-loader workers, the only children that handler is meant for."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)


def prepare(device: str | None = None) -> str:
    """Set Jittor's environment for this machine without importing it (see :mod:`jittor_setup`).

    Call it before a plain ``import jittor`` of your own; :func:`import_jittor` calls it too.
    An unusable home or cache folder is one :class:`UnetlabError` line.
    """
    try:
        return jittor_setup.prepare(device)
    except OSError as exc:
        raise _cache_error(exc) from None


def _cache_error(exc: OSError) -> UnetlabError:
    return UnetlabError(f"jittor: its cache folder {jittor_setup.jittor_home() / '.cache' / 'jittor'} is not "
                        f"usable ({exc.strerror or exc}); set HOME or JITTOR_HOME to a writable folder")


def import_jittor(device: str | None = None):
    """Return the ``jittor`` module, prepared for this machine (see :mod:`jittor_setup`).

    ``device`` (``auto``, ``cpu`` or ``cuda``) defaults to ``$UNETLAB_JITTOR_DEVICE`` or ``auto``.
    The one-line set-up summary goes to stderr unless ``$UNETLAB_QUIET`` is set.
    """
    global _jt
    summary = prepare(device)  # raises if a different device is asked for later
    if _jt is not None:
        return _jt
    if not os.environ.get("UNETLAB_QUIET"):
        print(summary, file=sys.stderr)
    try:
        import jittor
    except OSError as exc:  # Jittor writes its compiled core under its home at import
        raise _cache_error(exc) from None

    if jittor_setup.prepared_device() == "cuda":
        jittor.flags.use_cuda = 1
    _restore_sigchld()
    _jt = jittor
    return jittor
