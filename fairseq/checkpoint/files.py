"""Checkpoint files on disk: atomic writes and the one reader of every layout.

A file is written to a temp file in the same directory that its writer keeps locked
(fairseq/atomic_files.py, so a later trainer can tell a dead writer's leftovers:
save_dir.remove_stale_temp_files), flushed + fsynced and then os.replace'd into place, so readers
see either the old file or the complete new one. Copies are atomic copies too (no hard links, so
deleting or overwriting one never affects another).

Reading: torch.load(weights_only=True), with argparse.Namespace allow-listed for fairseq's own files,
then upgraded to fairseq 0.12's layout whichever fairseq (0.9-0.12) or we wrote it (upgrade.py).
"""
from __future__ import annotations

import os
import shutil
from typing import Dict

import torch

from fairseq.atomic_files import atomic_write
from fairseq.checkpoint import upgrade


class _WriteErrors:
    """A file object that keeps the exception of a failed write: torch.save reports it as an opaque
    RuntimeError ("unexpected pos ...": a full disk's OSError, or a second Ctrl-C's KeyboardInterrupt
    during a long save); this lets atomic_save raise the original instead. After a failure every write
    fails, so torch's end-of-file record is not written behind it."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data):
        if self.error is not None:
            raise OSError("an earlier write failed")
        try:
            return self.f.write(data)
        except BaseException as e:
            self.error = e
            raise

    def flush(self):
        return self.f.flush()


def atomic_save(obj, path: str) -> None:
    """torch.save to `path` so that readers see either the old file or the complete new one; a failure
    is raised as what caused it (OSError, KeyboardInterrupt), not as torch's RuntimeError around it."""
    def write(f):
        out = _WriteErrors(f)
        try:
            torch.save(obj, out)
        except BaseException as e:
            cause = out.error or _interrupt_behind(e)
            if cause is not None and cause is not e:
                raise cause from None
            raise
    atomic_write(path, write)


def _interrupt_behind(error: BaseException):
    """The KeyboardInterrupt that torch's zip writer turned into a RuntimeError when it closed the file
    (it is the RuntimeError's context), or None."""
    while error is not None and not isinstance(error, KeyboardInterrupt):
        error = error.__context__
    return error


def atomic_copy(src: str, dst: str) -> None:
    def write(f):
        with open(src, "rb") as s:
            shutil.copyfileobj(s, f, length=1 << 20)
    atomic_write(dst, write)


def load_checkpoint_file(path: str) -> Dict:
    """torch.load(weights_only=True), with argparse.Namespace allowed for fairseq's own files, upgraded
    to fairseq 0.12's layout whichever fairseq (0.9-0.12) or we wrote it (fairseq/upgrade.py)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals(upgrade.SAFE_GLOBALS):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a cut-off zip says OSError [Errno 22], other files many pickle/zip errors
        reason = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"
        raise ValueError(f"{path}: truncated or not a checkpoint ({reason})") from None
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"{path}: not a fairseq checkpoint (no 'model' entry)")
    return upgrade.upgrade_state(state, path)
