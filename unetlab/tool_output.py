"""Other programs' output -- a rank launcher, sbatch, Ray -- kept in a log file, and their failure
told in one line that points at it.

A launcher that fails can print dozens of lines (every rank's traceback, MPI's banners); a
scheduler prints its refusal over two lines; Ray logs while it starts.  unetlab's rule is one
line per refusal, so these programs write into a log, and :func:`tool_error` picks the line that
says what went wrong and names the log that holds the rest.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
from pathlib import Path

from .errors import UnetlabError

#: The longest line of another program's output quoted in an error.
MAX_QUOTE = 300
_NOISE = re.compile(r"^[-=*#\s]*$")
#: A line that states an error: ``sbatch: error: ...``, ``unetlab train: error: ...``, a Python
#: exception's last line (``RuntimeError: ...``).
_ERROR = re.compile(r"\berror:|^[\w.]*(Error|Exception): ", re.IGNORECASE)
#: A line that hints at one (a launcher's summary, ``... failed``).
_TELLING = re.compile(r"error|failed|refused|invalid|not found|no such|denied|cannot|unable", re.IGNORECASE)


def telling_line(output: str) -> str:
    """The line of ``output`` that best says what went wrong: the last one naming an error (joined
    with the error lines just before it, as sbatch splits one refusal over two), else the last."""
    lines = [line.strip() for line in output.splitlines() if line.strip() and not _NOISE.match(line)]
    if not lines:
        return ""
    errors = ([i for i, line in enumerate(lines) if _ERROR.search(line)]
              or [i for i, line in enumerate(lines) if _TELLING.search(line)])
    if not errors:
        picked = [lines[-1]]
    else:
        end = errors[-1]
        start = end
        while start - 1 in errors and end - start < 2:  # a refusal told over consecutive lines
            start -= 1
        picked = lines[start:end + 1]
    text = "; ".join(dict.fromkeys(picked))
    return text if len(text) <= MAX_QUOTE else text[:MAX_QUOTE - 3] + "..."


def save_output(output: str, log: Path) -> Path | None:
    """Append ``output`` to ``log`` (None when it cannot be written)."""
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as f:
            f.write(output if output.endswith("\n") else output + "\n")
        return log
    except OSError:
        return None


def tool_error(what: str, output: str, log: Path | None = None, hint: str = "", saved: bool = False,
               error: type = UnetlabError) -> UnetlabError:
    """A one-line error: ``what``, the telling line of ``output``, ``hint`` and the log holding the
    whole output (``output`` is appended to ``log`` first unless it was ``saved`` there already)."""
    line = telling_line(output)
    text = f"{what}: {line}" if line else what
    if hint:
        text += f"; {hint}"
    if log is not None and output and not saved:
        log = save_output(output, Path(log))
    if log is not None:
        text += f" (full output: {log})"
    return error(" ".join(text.split()))


def _tail(path: Path, size: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - size))
            return f.read().decode("utf8", errors="replace")
    except OSError:
        return ""


def log_size(log: Path) -> int:
    """The size of ``log`` now (0 when there is none): where the output of the next attempt starts."""
    try:
        return Path(log).stat().st_size
    except OSError:
        return 0


def read_log(log: Path, start: int = 0, limit: int = 1 << 20) -> str:
    """What ``log`` holds from byte ``start`` on (its last ``limit`` bytes; empty when there is none)."""
    return _tail(Path(log), min(limit, max(0, log_size(log) - start)))


@contextlib.contextmanager
def output_into(log: Path):
    """Send this process's stdout and stderr (the file descriptors, so child processes and C
    libraries too) into ``log`` for the duration; restored afterwards."""
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = [os.dup(1), os.dup(2)]
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield log
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (fd, *saved):
            os.close(f)
