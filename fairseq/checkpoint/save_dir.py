"""The save directory, made ready before any training: writable, owned by this job, free of our litter.

fairseq checks that --save-dir is writable at start-up (checkpoint_utils.verify_checkpoint_directory);
a directory found unusable only at the first save loses the training it was meant to keep. Here rank 0
of fairseq-train (unless --no-save) calls :func:`prepare`, which

1. creates the directory and writes, fsyncs and removes a probe file in it: a read-only file system,
   a path that is a file, or missing permissions are one error naming the path and the cause;
2. takes the directory's lock (LOCK_NAME, an flock held for the life of the trainer:
   fairseq/file_lock.py): a second trainer on a directory in use is refused, whatever its host or pid
   namespace; a trainer that died (kill -9 included) holds nothing, so the next one simply takes it;
3. removes the temp files of our checkpoint writer (fairseq/atomic_files.py) whose writer is gone: a
   save killed mid-write leaves a checkpoint-sized one behind. Nothing else is touched.

:func:`release` drops the lock and removes its file when the trainer ends.
"""
from __future__ import annotations

import logging
import os
from typing import Optional

from fairseq import atomic_files, file_lock

logger = logging.getLogger(__name__)
LOCK_NAME = ".fairseq-train.lock"
PROBE_NAME = "write-check"
# The final names whose temp files our writers leave here: checkpoints and the write probe.
OUR_FINALS = r"checkpoint.*\.pt|" + PROBE_NAME


class SaveDirError(ValueError):
    """The save directory cannot be used (or a save into it failed). Every rank raises it together;
    rank 0 reports it (fairseq_cli/train.py), so a distributed job prints it once."""


def _cause(e: OSError) -> str:
    return e.strerror or str(e)


def check_writable(save_dir: str) -> None:
    """Create `save_dir` and prove a file can be written and fsynced in it, else SaveDirError."""
    if os.path.exists(save_dir) and not os.path.isdir(save_dir):
        raise SaveDirError(f"--save-dir {save_dir}: is a file, not a directory")
    try:
        os.makedirs(save_dir, exist_ok=True)
        fd, probe = atomic_files.temp_file(save_dir, PROBE_NAME)
        try:
            os.write(fd, b"fairseq-train write check\n")
            os.fsync(fd)
        finally:
            os.unlink(probe)
            os.close(fd)
    except OSError as e:
        where = e.filename if isinstance(e.filename, str) else save_dir
        raise SaveDirError(f"--save-dir {save_dir}: cannot write there ({_cause(e)}: {where})") from None


def acquire_lock(save_dir: str) -> str:
    """Hold the save dir's lock until release() or the end of this process; SaveDirError if another
    trainer holds it. A file system without locks is a warning: the directory is used unguarded."""
    path = os.path.join(save_dir, LOCK_NAME)
    try:
        previous = file_lock.acquire(path)
    except file_lock.Busy as e:
        owner = e.owner or "its owner not recorded yet"
        raise SaveDirError(f"--save-dir {save_dir} is in use by another fairseq-train ({owner}; lock file {path}); "
                           "stop it or choose another --save-dir") from None
    except IsADirectoryError:
        raise SaveDirError(f"--save-dir {save_dir}: its lock file {path} is a directory; remove it") from None
    except OSError as e:
        if e.errno in file_lock.NO_LOCKS:
            logger.warning(f"--save-dir {save_dir}: the file system does not support locks ({_cause(e)}); a second "
                           "trainer on this directory would not be refused (docs/faults.md)")
            return path
        raise SaveDirError(f"--save-dir {save_dir}: cannot lock {path} ({_cause(e)})") from None
    if previous:
        logger.info(f"took the lock {path} left by {previous}, which no longer holds it")
    return path


def release(save_dir: str) -> None:
    """Drop this process's lock of `save_dir` and remove the lock file (no-op if not held)."""
    file_lock.release(os.path.join(save_dir, LOCK_NAME))


def remove_stale_temp_files(save_dir: str) -> int:
    """Delete the temp files our writers left in save_dir whose writer is gone; returns how many."""
    removed = atomic_files.remove_abandoned(save_dir, OUR_FINALS)
    for path, size in removed:
        logger.warning(f"removed {path} ({size:,} bytes), left by a save that never finished")
    return len(removed)


def last_save_note(args) -> str:
    """What a run that stops without saving leaves behind, for its one-line message."""
    if args.no_save:
        return "nothing is saved (--no-save)"
    name = f"checkpoint_last{getattr(args, 'checkpoint_suffix', '') or ''}.pt"
    if os.path.isfile(os.path.join(args.save_dir, name)):
        return f"{name} is the last complete save"
    return f"no checkpoint has been saved in {args.save_dir} yet"


def prepare(save_dir: str) -> Optional[str]:
    """check_writable + acquire_lock + remove_stale_temp_files; returns the problem as one line, or None."""
    try:
        check_writable(save_dir)
        acquire_lock(save_dir)
        remove_stale_temp_files(save_dir)
    except SaveDirError as e:
        return str(e)
    return None
