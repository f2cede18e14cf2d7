"""DataLoader workers obey their parent only: a signal sent to the whole job does not decide its fate.

Clusters stop a job by signalling every process of it at once (SLURM's preemption and scancel,
docker stop, Kubernetes, ``timeout``, ``kill -TERM -- -PGID``, a terminal's Ctrl-C), DataLoader
workers included. torch's workers die of a SIGTERM that their parent did not send, and the trainer
then fails with "DataLoader worker (pid N) is killed by signal" instead of finishing its update and
saving. Here a worker ignores SIGTERM and SIGINT from anyone but its parent, so the trainer alone
decides (docs/faults.md), and the workers end with it: on the SIGTERM their parent sends them at its
exit (multiprocessing terminates daemonic children), on torch's shutdown message, or, if the parent
died without either, when torch's watchdog finds it gone (within 5 s).

The signals are blocked in the thread that forks the workers, so a worker starts with them blocked
(a signal to the group that arrives while workers start is held, not acted on), and one thread in
each worker takes them with sigwaitinfo, which tells who sent each.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading

STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})


@contextlib.contextmanager
def held():
    """SIGTERM/SIGINT blocked in this thread meanwhile: processes forked inside start with them blocked.

    A signal that arrives meanwhile is delivered when the block ends (or at once, to another thread of
    this process, whose Python handler then runs in the main thread as usual).
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def worker_init(worker_id: int) -> None:
    """DataLoader worker_init_fn: from now on SIGTERM/SIGINT reach this worker only through
    _obey_parent (every thread started later inherits the block)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    threading.Thread(target=_obey_parent, args=(os.getppid(),), name="fairseq-worker-signals",
                     daemon=True).start()


def _obey_parent(parent: int) -> None:
    """End this worker on its parent's SIGTERM (as torch's own worker handler does); ignore the rest."""
    while True:
        info = signal.sigwaitinfo(STOP_SIGNALS)
        if info.si_signo == signal.SIGTERM and info.si_pid == parent:
            os._exit(0)
