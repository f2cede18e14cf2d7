"""A data directory whose files fairseq-preprocess replaces as a unit: readers never train on a mix.

fairseq-preprocess writes dict.txt, <split>.bin/.idx and the rest under temp names, then renames
them to their final names, one rename each. A run killed between two of those renames would leave,
say, a new dict.txt beside an older run's train.bin, which trains without a word (the ids fit, they
just mean other tokens). So the renames are bracketed by a marker file, MARKER, written before the
first and removed after the last (:func:`commit`): while it exists, the directory may mix two runs,
and every reader of fairseq's data files (Dictionary.load of a dict.txt, MMapIndexedDataset: so
fairseq-train, fairseq-validate, the hub) refuses it with one line (:func:`check_complete`). A rerun
of fairseq-preprocess replaces the files and removes the marker.

The files themselves stay where fairseq puts them, byte for byte; a completed directory holds no
marker (a directory fairseq itself wrote has none either, and is read as before). A marker is
removed only once every file it names has been replaced, so a rerun that writes fewer files (say,
only a valid split) leaves the directory refused, naming the files still mixed.
"""
from __future__ import annotations

import json
import os
import socket
from typing import List, Sequence, Tuple

from fairseq.atomic_files import atomic_write, fsync_dir

MARKER = ".fairseq-preprocess.committing"


def _read(directory: str) -> dict:
    try:
        with open(os.path.join(directory, MARKER), encoding="utf-8") as f:
            record = json.load(f)
        return record if isinstance(record, dict) else {}
    except (OSError, ValueError):
        return {}


def check_complete(directory: str) -> None:
    """ValueError naming `directory` if a fairseq-preprocess was interrupted while replacing its files."""
    if not os.path.lexists(os.path.join(directory or ".", MARKER)):
        return
    record = _read(directory or ".")
    who = f"pid {record['pid']} on host {record['host']}" if "pid" in record and "host" in record else "a run"
    files = ", ".join(record.get("files") or []) or "its files"
    raise ValueError(f"{directory or '.'}: fairseq-preprocess ({who}) was interrupted while replacing {files}, "
                     f"so they may mix two runs' files; rerun fairseq-preprocess into {directory or '.'} "
                     f"(the marker {MARKER} says so)")


def _write_marker(directory: str, files: Sequence[str]) -> None:
    record = {"pid": os.getpid(), "host": socket.gethostname(), "files": sorted(files)}
    atomic_write(os.path.join(directory, MARKER), lambda f: f.write((json.dumps(record) + "\n").encode()))


def commit(directory: str, renames: List[Tuple[str, str]]) -> None:
    """os.replace(tmp, final) for every pair, bracketed by the marker (see the module docstring)."""
    finals = [os.path.basename(final) for _, final in renames]
    pending = set(finals) | set(_read(directory).get("files") or [])
    _write_marker(directory, pending)
    for tmp, final in renames:
        os.replace(tmp, final)
    fsync_dir(directory)
    still_mixed = pending - set(finals)
    if still_mixed:
        _write_marker(directory, still_mixed)
    else:
        os.unlink(os.path.join(directory, MARKER))
        fsync_dir(directory)
