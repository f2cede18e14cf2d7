"""fairseq.distributed.DistributedTimeoutWrapper: signal this process when a module stops being called.

A watchdog thread waits for a forward pass; after the first one, every `timeout` seconds without
another sends `signal` (SIGINT by default) to the process, so a job stuck in a collective whose peer
died ends instead of hanging. timeout <= 0 disables it. fairseq-train here bounds such waits with the
process group's timeout instead (--heartbeat-timeout, fairseq/distributed/faults.py); this class is
fairseq's public wrapper for plugins and scripts that drive their own loop.
"""
from __future__ import annotations

import logging
import os
import signal
import threading

from torch import nn

logger = logging.getLogger(__name__)


class DistributedTimeoutWrapper(nn.Module):
    def __init__(self, module: nn.Module, timeout: int, signal=signal.SIGINT):
        super().__init__()
        self.module = module
        self.timeout = timeout
        self.signal = signal
        self._terminated = False
        self._heartbeat = None
        self._heartbeat_thread = None
        if timeout > 0:
            self._heartbeat = threading.Event()
            self._heartbeat_thread = threading.Thread(target=self._check_heartbeat, args=(os.getpid(),),
                                                      daemon=True)
            self._heartbeat_thread.start()

    def __del__(self):
        self.stop_timeout()

    def __getattr__(self, name):
        """Attributes this wrapper does not have come from the wrapped module."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)

    def stop_timeout(self) -> None:
        """End the watchdog (waits for it: at most one timeout period, or at once if it never started)."""
        thread = self.__dict__.get("_heartbeat_thread")
        if thread is not None:
            self._terminated = True
            self._heartbeat.set()  # wakes the watchdog whether it waits for the first or the next beat
            thread.join()
            self._heartbeat_thread = None

    def state_dict(self, *args, **kwargs):
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, *args, **kwargs):
        return self.module.load_state_dict(*args, **kwargs)

    def forward(self, *args, **kwargs):
        if self._heartbeat is not None:
            self._heartbeat.set()
        return self.module(*args, **kwargs)

    def _check_heartbeat(self, parent_pid: int) -> None:
        self._heartbeat.wait()  # the first forward pass starts the clock
        while not self._terminated:
            self._heartbeat.clear()
            beat = self._heartbeat.wait(timeout=self.timeout)
            if self._terminated:
                return
            if not beat:
                logger.error(f"Killing job for not making progress in {int(self.timeout)} seconds. "
                             "Set --heartbeat-timeout=-1 to disable this timeout.")
                os.kill(parent_pid, self.signal)
                return
