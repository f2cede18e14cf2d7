"""The signal state a test's child process starts with, set up by the test instead of inherited.

A shell gives the job it runs in the foreground SIGINT's default action (Ctrl-C ends it), and a job it
starts in the background (`cmd &` in a script, `nohup ... &`, many CI runners and batch schedulers)
SIGINT ignored. A child inherits whatever its parent had, so a test that sends SIGINT must say which of
the two it means: pass one of these as Popen's preexec_fn (it runs in the child before exec), or, for a
SIGINT to this very process, run the code under `foreground_sigint()`.
Tests that do are marked @pytest.mark.signals; tests/test_signal_state.py reruns them in a suite
started in the background.
"""
import contextlib
import signal


def as_foreground_job() -> None:
    """Like a job an interactive shell runs in the foreground: SIGINT (Ctrl-C) has its default action."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def as_background_job() -> None:
    """Like a job a script starts with `&`: SIGINT ignored (Ctrl-C at the terminal is not for it)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def foreground_sigint():
    """This process as a foreground one for the duration (Python's KeyboardInterrupt handler on SIGINT), then
    back to what it had: a suite started in the background has SIGINT ignored, and fairseq-train keeps it so."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
