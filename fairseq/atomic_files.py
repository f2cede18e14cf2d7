"""Files and folders that readers see whole or not at all, and temp files that tell whether their writer lives.

A file is written under a temp name beside its final name, flushed, fsynced and renamed over it
(os.replace): a reader sees the old file or the new complete one. The temp name is exactly
``.tmp-<pid>-<final name>-<8 random characters>`` and its writer holds an flock on it from creation
to rename (fairseq/file_lock.py). So a later process can prove a temp file abandoned: its name has
exactly that form, with a final name the caller says it writes, and no process holds its lock (in any
pid namespace: a pid in a name proves nothing, it may be reused or belong to another namespace).
:func:`remove_abandoned` removes only such files; anything else is left alone and never named.

A folder is committed as a unit by writing it as a fresh sibling and exchanging the two names in one
step (:func:`replace_dir`, Linux renameat2 RENAME_EXCHANGE), so a reader never sees a mix of two
versions of its files.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import logging
import os
import re
import shutil
import tempfile
from typing import Callable, List, Optional, Tuple

from fairseq import file_lock

logger = logging.getLogger(__name__)
TEMP_PREFIX = ".tmp-"
_TEMP_RE = re.compile(r"\.tmp-(?P<pid>\d+)-(?P<final>.+)-[a-z0-9_]{8}")  # tempfile.mkstemp's 8 characters

_UMASK = os.umask(0o022)
os.umask(_UMASK)


def fsync_dir(path: str) -> None:
    """Make a rename in `path` durable (where the file system allows opening a directory)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temp_file(directory: str, final_name: str) -> Tuple[int, str]:
    """(descriptor, path) of a new temp file for `final_name` in `directory`, locked by this process."""
    while True:
        fd, path = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-{final_name}-", dir=directory)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as e:
            if e.errno not in file_lock.NO_LOCKS:
                os.close(fd)
                raise
            return fd, path  # no locks on this file system: such a temp file is never provably abandoned
        if os.path.exists(path):
            return fd, path
        os.close(fd)  # removed as abandoned between its creation and our lock: make another


def atomic_write(path: str, write_fn: Callable) -> None:
    """write_fn(binary file) into a locked temp file, fsync, then rename it to `path` (the rename made
    durable); on any exception the temp file is removed and `path` is untouched."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with replacing(path, mode="wb") as f:
        write_fn(f)
    fsync_dir(directory)


@contextlib.contextmanager
def replacing(path: str, mode: str = "w", encoding: str = "utf-8"):
    """A file open for writing (text, or binary with mode="wb") that becomes `path` when the block ends
    normally: flushed, fsynced, renamed over it while its temp file is still locked. On an exception it
    is removed and `path` is left as it was (no empty or partial output)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = temp_file(directory, os.path.basename(path))
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as f:  # closing drops the lock
            yield f
            f.flush()
            os.fsync(f.fileno())
            os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
            os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def temp_name_final(name: str) -> Optional[str]:
    """The final name a temp file of ours was written for, or None if `name` is not one of ours."""
    m = _TEMP_RE.fullmatch(name)
    return m.group("final") if m else None


def remove_abandoned(directory: str, finals: str) -> List[Tuple[str, int]]:
    """Remove the temp files in `directory` that are ours for a final name matching the regex `finals`
    and whose writer is gone (no process holds their lock); [(path, size)] of those removed."""
    removed = []
    for name in sorted(os.listdir(directory)):
        final = temp_name_final(name)
        path = os.path.join(directory, name)
        if final is None or not re.fullmatch(finals, final) or not os.path.isfile(path) or os.path.islink(path):
            continue
        if file_lock.in_use(path):
            continue
        try:
            size = os.path.getsize(path)
            os.unlink(path)
        except OSError:
            continue
        removed.append((path, size))
    return removed


# ---- folders ------------------------------------------------------------------------------------
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: str, b: str) -> bool:
    """Swap the names `a` and `b` in one step (renameat2 RENAME_EXCHANGE); False where the C library
    or the file system cannot (then the caller renames twice)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), b)


class NewDir:
    """A fresh folder beside `target` (same file system), locked by this process while it is filled;
    commit() gives it target's name as a unit, discard() removes it."""

    def __init__(self, target: str):
        self.target = os.path.abspath(target)
        parent = os.path.dirname(self.target)
        os.makedirs(parent, exist_ok=True)
        self.path = tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-{os.path.basename(self.target)}-",
                                     dir=parent)
        os.chmod(self.path, 0o777 & ~_UMASK)  # mkdtemp makes 0700; the folder gets the usual permissions
        self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except OSError:
            pass  # no locks on this file system: the folder is never provably abandoned, so never removed

    def commit(self) -> None:
        try:
            replace_dir(self.path, self.target)
        finally:
            os.close(self._fd)

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        os.close(self._fd)


def replace_dir(new: str, target: str) -> None:
    """Give the complete folder `new` the name `target` as a unit: a reader sees the old folder or the
    new one, never a mix. An existing `target` is exchanged with `new` in one step and then removed
    (where the file system cannot exchange, it is first moved aside, to `new`'s name + '.old': then for
    a moment there is no `target`, still never a mix)."""
    target = os.path.abspath(target)
    if not os.path.lexists(target):
        os.rename(new, target)
    elif _exchange(new, target):
        shutil.rmtree(new)
    else:
        aside = new + ".old"
        os.rename(target, aside)
        os.rename(new, target)
        shutil.rmtree(aside)
    fsync_dir(os.path.dirname(target))


def remove_abandoned_dirs(target: str) -> List[str]:
    """Clean up after NewDir(target) writers that are gone (none holds their folder's lock): their
    unfinished folders are removed; an old `target` one of them had moved aside (replace_dir without
    an exchange, killed between its two renames) goes back to its name if nothing has taken it.
    Returns the paths removed; nothing else is touched."""
    target = os.path.abspath(target)
    parent = os.path.dirname(target)
    removed = []
    for name in sorted(os.listdir(parent)) if os.path.isdir(parent) else []:
        aside = name.endswith(".old")
        stem = os.path.join(parent, name[:-len(".old")] if aside else name)
        path = os.path.join(parent, name)
        if temp_name_final(os.path.basename(stem)) != os.path.basename(target) or os.path.islink(path) \
                or not os.path.isdir(path) or (os.path.isdir(stem) and file_lock.in_use(stem)):
            continue
        if aside and not os.path.lexists(target):
            os.rename(path, target)
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed
