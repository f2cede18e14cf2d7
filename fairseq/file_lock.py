"""Exclusive locks that the kernel drops when their holder dies: ``fcntl.flock`` on an open file.

A lock file that merely exists is not a lock: its owner can die without removing it, its pid can be
reused by an unrelated process or live in another pid namespace (a second container on the same
volume), and two starters can both decide that it is stale and both take it. An flock belongs to an
open file description: the kernel releases it when the last descriptor is closed, however the
process ends (kill -9 included), and it excludes processes of every pid namespace of the host. On NFS
the client forwards it to the server's lock manager, so it excludes other clients too
(docs/faults.md says where that does not hold).

The holder may remove the lock file when it is done (:func:`release`). A process that opened the file
just before it was removed would then lock a file that is no longer at the path; :func:`acquire`
therefore checks, once it holds the lock, that the file it locked is still the one the path names,
and tries again otherwise. So at any time at most one process holds the lock of the path.

The owner's pid, host and start time are written into the file for messages only; nothing decides
by them. A forked child (a DataLoader worker) does not keep its parent's locks alive: its copies of
the descriptors are closed right after the fork.
"""
from __future__ import annotations

import errno
import fcntl
import os
import socket
import time
from typing import Dict

_held: Dict[str, int] = {}  # path -> descriptor holding its lock, in this process
NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)  # what a file system without locks answers


class Busy(Exception):
    """The lock is held by another live process; `owner` is what that process recorded ('' if nothing yet)."""

    def __init__(self, path: str, owner: str):
        super().__init__(f"{path} is locked by {owner or 'another process'}")
        self.path, self.owner = path, owner


def _process_start() -> float:
    """This process's start time (seconds since the epoch), from /proc; now where /proc is missing."""
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()


def owner_record() -> str:
    """'pid N on host H, started YYYY-mm-dd HH:MM:SS': who holds a lock, for a message."""
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(_process_start()))
    return f"pid {os.getpid()} on host {socket.gethostname()}, started {started}"


def read_owner(path: str) -> str:
    """The owner record written in the lock file at `path`, or '' (not written yet, unreadable)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(4096).strip()
    except OSError:
        return ""


def _same_file(fd: int, path: str) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def acquire(path: str) -> str:
    """Take the exclusive lock of `path` (the file is created if missing) until :func:`release` or the
    end of this process; returns the record of the previous owner that ended without releasing it ('').

    Raises Busy if another process holds it, OSError if `path` cannot be a lock file (a directory:
    IsADirectoryError) or the file system refuses locks (errno in NO_LOCKS).
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise Busy(path, read_owner(path)) from None
        except BaseException:
            os.close(fd)
            raise
        if _same_file(fd, path):
            break
        os.close(fd)  # its holder removed it between our open and our lock: lock the path's new file
    previous = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
    os.ftruncate(fd, 0)
    os.pwrite(fd, (owner_record() + "\n").encode(), 0)
    _held[path] = fd
    return previous


def in_use(path: str) -> bool:
    """Whether a process may be using the file or folder at `path`: False only when we could take its
    lock ourselves (then no live process holds it), True when another holds it or it cannot be tested."""
    try:
        fd = os.open(path, (os.O_RDONLY if os.path.isdir(path) else os.O_RDWR) | os.O_CLOEXEC)
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def release(path: str) -> None:
    """Remove the lock file (still holding its lock, so no one else can have it) and drop the lock."""
    fd = _held.pop(path, None)
    if fd is None:
        return
    try:
        if _same_file(fd, path):
            os.unlink(path)
    except OSError:
        pass
    finally:
        os.close(fd)


def _close_in_child() -> None:
    """After a fork: the child's copies of the descriptors would keep the locks held after the parent
    died; closing them (not unlocking: the parent still holds the lock) leaves the parent the only holder."""
    for fd in _held.values():
        try:
            os.close(fd)
        except OSError:
            pass
    _held.clear()


os.register_at_fork(after_in_child=_close_in_child)
