"""Forked children do not inherit the stop-cleanly handlers of workers and the trainer."""
import os
import signal
import subprocess
import sys
import textwrap

from unetlab.run.signals import keep_handlers_out_of_forks


def test_a_forked_child_gets_default_handlers_back():
    keep_handlers_out_of_forks()
    old = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report what SIGTERM does here
            os.write(write, b"default" if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL else b"inherited")
            os._exit(0)
        os.close(write)
        seen = os.read(read, 32)
        os.waitpid(pid, 0)
        assert seen == b"default"
        assert signal.getsignal(signal.SIGTERM) != signal.SIG_DFL  # the parent keeps its own
    finally:
        signal.signal(signal.SIGTERM, old)


def test_a_pool_shut_down_under_the_worker_handler_ends():
    """A fork pool's shutdown sends SIGTERM to its children; with the worker's handler inherited
    they raised KeyboardInterrupt instead of exiting (tracebacks on stderr; once, interrupted
    inside a queue lock, a child never exited and its parent -- Jittor's compiler pool at a
    worker's exit -- waited for it forever)."""
    code = textwrap.dedent("""
        import multiprocessing, signal
        from unetlab.run.worker import _interrupt
        from unetlab.run.signals import keep_handlers_out_of_forks
        keep_handlers_out_of_forks()
        signal.signal(signal.SIGTERM, _interrupt)
        for _ in range(5):
            with multiprocessing.get_context("fork").Pool(8) as pool:
                assert pool.map(abs, [-1, -2]) == [1, 2]
        print("ended")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ended", done.stderr[-2000:]
    assert "KeyboardInterrupt" not in done.stderr, done.stderr[-2000:]
