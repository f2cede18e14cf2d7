"""The save directory, made ready before any training: writable, owned by this job, free of litter.

fairseq checks that --save-dir is writable at start-up (checkpoint_utils.verify_checkpoint_directory);
a directory found unusable only at the first save loses the training it was meant to keep. Here rank 0
of fairseq-train (unless --no-save) calls :func:`prepare`, which

1. creates the directory and writes, fsyncs and removes a probe file in it: a read-only file system,
   a path that is a file, or missing permissions are one error naming the path and the cause;
2. takes the directory's lock file (LOCK_NAME, holding "pid host", touched every REFRESH_S while the
   owner lives): a second trainer on a directory in use is refused; a lock left by a dead process on
   this host, or by another host's trainer that has not touched it for STALE_LOCK_S, is taken over;
3. removes the temp files (``.tmp-<pid>-...``, see files._atomic_write) of writers that are no
   longer running: a save killed mid-write leaves a checkpoint-sized one behind.

:func:`release` removes the lock when the trainer ends (a process killed with -9 leaves it; the
next trainer takes it over as stale).
"""
from __future__ import annotations

import logging
import os
import re
import socket
import tempfile
import threading
import time
from typing import Optional

from fairseq.checkpoint.files import TEMP_PREFIX

logger = logging.getLogger(__name__)
LOCK_NAME = ".fairseq-train.lock"
# The owner touches its lock every REFRESH_S; a lock of another host (whose pid cannot be checked)
# that has not been touched for STALE_LOCK_S belongs to a trainer that was killed (kill -9, a preempted
# node) and is taken over, so a job requeued on another node resumes.
REFRESH_S = 60
STALE_LOCK_S = 600
_refreshers = {}  # lock path -> the Event that stops its refresh thread
_TEMP_PID = re.compile(re.escape(TEMP_PREFIX) + r"(\d+)-")


class SaveDirError(ValueError):
    """The save directory cannot be used (or a save into it failed). Every rank raises it together;
    rank 0 reports it (fairseq_cli/train.py), so a distributed job prints it once."""


def _cause(e: OSError) -> str:
    return e.strerror or str(e)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def check_writable(save_dir: str) -> None:
    """Create `save_dir` and prove a file can be written and fsynced in it, else SaveDirError."""
    if os.path.exists(save_dir) and not os.path.isdir(save_dir):
        raise SaveDirError(f"--save-dir {save_dir}: is a file, not a directory")
    try:
        os.makedirs(save_dir, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-probe-", dir=save_dir)
        try:
            os.write(fd, b"fairseq-train write check\n")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as e:
        where = e.filename if isinstance(e.filename, str) else save_dir
        raise SaveDirError(f"--save-dir {save_dir}: cannot write there ({_cause(e)}: {where})") from None


def _read_lock(path: str):
    """(pid, host) of the lock file at `path`, or None if it vanished or is unreadable/empty."""
    try:
        with open(path) as f:
            pid, host = f.read().split()[:2]
        return int(pid), host
    except (OSError, ValueError):
        return None


def acquire_lock(save_dir: str) -> str:
    """Create the lock file holding this process's pid and host; SaveDirError if a live trainer holds it."""
    path = os.path.join(save_dir, LOCK_NAME)
    me = f"{os.getpid()} {socket.gethostname()}\n"
    for _ in range(3):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            owner = _read_lock(path)
            if owner is not None:
                pid, host = owner
                if host != socket.gethostname():
                    age = _age(path)
                    if age < STALE_LOCK_S:
                        raise SaveDirError(
                            f"--save-dir {save_dir} is in use by fairseq-train pid {pid} on host {host} (lock file "
                            f"{path}, refreshed {age:.0f} s ago); stop it or choose another --save-dir") from None
                    logger.warning(f"taking over the stale lock {path} of pid {pid} on host {host}, not refreshed "
                                   f"for {age:.0f} s")
                elif _alive(pid) and pid != os.getpid():
                    raise SaveDirError(f"--save-dir {save_dir} is in use by another fairseq-train (pid {pid}, lock "
                                       f"file {path}); stop it or choose another --save-dir") from None
                else:
                    logger.warning(f"taking over the stale lock {path} of pid {pid}, which is no longer running")
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            continue
        except OSError as e:
            raise SaveDirError(f"--save-dir {save_dir}: cannot create the lock file {path} ({_cause(e)})") from None
        with os.fdopen(fd, "w") as f:
            f.write(me)
        _start_refreshing(path)
        return path
    raise SaveDirError(f"--save-dir {save_dir}: could not take the lock file {path} (another trainer keeps racing)")


def _age(path: str) -> float:
    try:
        return max(0.0, time.time() - os.stat(path).st_mtime)
    except OSError:
        return float("inf")


def _start_refreshing(path: str) -> None:
    """Touch the lock every REFRESH_S seconds from a daemon thread until release(), so a trainer on
    another host (which cannot check our pid) can tell a live owner from one that was killed."""
    stop = threading.Event()
    _refreshers[path] = stop

    def refresh():
        while not stop.wait(REFRESH_S):
            try:
                os.utime(path)
            except OSError:
                return
    threading.Thread(target=refresh, name="fairseq-save-dir-lock", daemon=True).start()


def release(save_dir: str) -> None:
    """Remove the lock file if this process holds it."""
    path = os.path.join(save_dir, LOCK_NAME)
    stop = _refreshers.pop(path, None)
    if stop is not None:
        stop.set()
    owner = _read_lock(path)
    if owner is not None and owner[0] == os.getpid() and owner[1] == socket.gethostname():
        try:
            os.unlink(path)
        except OSError:
            pass


def remove_stale_temp_files(save_dir: str) -> int:
    """Delete temp files whose writer (the pid in their name) is not running; returns how many.

    Called with the lock held, so no other trainer writes here; names without a pid are from an
    older writer and are stale too.
    """
    removed = 0
    for name in os.listdir(save_dir):
        if not name.startswith(TEMP_PREFIX):
            continue
        m = _TEMP_PID.match(name)
        if m and _alive(int(m.group(1))):
            continue
        path = os.path.join(save_dir, name)
        try:
            size = os.path.getsize(path)
            os.unlink(path)
        except OSError:
            continue
        removed += 1
        logger.warning(f"removed {path} ({size:,} bytes), left by a save that never finished")
    return removed


def prepare(save_dir: str) -> Optional[str]:
    """check_writable + acquire_lock + remove_stale_temp_files; returns the problem as one line, or None."""
    try:
        check_writable(save_dir)
        acquire_lock(save_dir)
        remove_stale_temp_files(save_dir)
    except SaveDirError as e:
        return str(e)
    return None
