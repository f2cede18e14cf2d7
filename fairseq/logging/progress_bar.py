"""Log output in fairseq's formats: json, simple, tqdm, none (+ optional tensorboard).

json lines are `YYYY-MM-DD HH:MM:SS | INFO | <tag> | {...}`: the python logging record format that
`setup_logging` installs, with the logger named after the tag (train_inner / train / valid), so the
lines are byte-compatible with fairseq's (FAIRSEQ_SPEC section 8).
"""
from __future__ import annotations

import json
import logging
import os
import sys
from collections import OrderedDict
from typing import Dict, Iterable, Optional

from fairseq.logging import wandb_log
from fairseq.logging.meters import format_stats

LOG_FORMAT = "%(asctime)s | %(levelname)s | %(name)s | %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
FORMATS = ("json", "simple", "tqdm", "none")


class _StdoutHandler(logging.StreamHandler):
    """Writes each record to sys.stdout as it is at that moment, not as it was at set-up, so a later
    redirect (the quickstart's, pytest's capture) is followed instead of writing to a closed stream."""

    def __init__(self):
        super().__init__(sys.stdout)

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value):
        pass


def log_file_handler(path: str) -> logging.FileHandler:
    """A handler appending to --log-file, its directory created when missing (fairseq fails there with
    a FileNotFoundError traceback); a path that cannot be written is one ValueError naming it."""
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        return logging.FileHandler(path)
    except OSError as e:
        raise ValueError(f"--log-file {path}: cannot write there ({e.strerror or e})") from None


def setup_logging(log_file: Optional[str] = None, stream=None, rank: int = 0) -> None:
    """Root logger to stdout (as fairseq does) in fairseq's line format; optional copy to --log-file.

    Rank 0 of a distributed job logs like a single process (INFO, and the --log-file copy); the
    other ranks log warnings only, to stdout, so the file holds one process's log (fairseq's levels).
    """
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_fairseq_sctd", False):
            root.removeHandler(h)
            h.close()
    handlers = [logging.StreamHandler(stream) if stream is not None else _StdoutHandler()]
    if log_file and rank == 0:
        handlers.append(log_file_handler(log_file))
    for h in handlers:
        h.setFormatter(logging.Formatter(LOG_FORMAT, DATE_FORMAT))
        h._fairseq_sctd = True
        root.addHandler(h)
    root.setLevel(logging.INFO if rank == 0 else logging.WARNING)


def resolve_format(log_format: Optional[str], no_progress_bar: bool) -> str:
    if log_format is None:
        return "simple" if no_progress_bar or not sys.stderr.isatty() else "tqdm"
    if log_format not in FORMATS:
        raise ValueError(f"unknown --log-format {log_format!r}; choose from: {', '.join(FORMATS)}")
    return log_format


class ProgressLogger:
    """Writes train_inner / train / valid records; `wrap` decorates the batch iterable (tqdm)."""

    def __init__(self, log_format: str, epoch: int = 1, total: int = 0, tensorboard_logdir: Optional[str] = None):
        self.format = log_format
        self.epoch = epoch
        self.total = total
        self._bar = None
        self._tb = {}
        self.tensorboard_logdir = tensorboard_logdir

    def wrap(self, iterable: Iterable, offset: int = 0) -> Iterable:
        if self.format != "tqdm":
            return iterable
        from tqdm import tqdm

        self._bar = tqdm(iterable, total=self.total, initial=offset, leave=False,
                         desc=f"epoch {self.epoch:03d}", file=sys.stderr)
        return self._bar

    def log(self, stats: Dict, tag: str, step: int, update_frac: Optional[float] = None) -> None:
        """A mid-epoch record (train_inner)."""
        formatted = format_stats(stats)
        self._tensorboard(stats, tag, step)
        wandb_log.log(stats, tag, step)
        if self.format == "json":
            record = OrderedDict(epoch=self.epoch)
            if update_frac is not None:
                record["update"] = round(update_frac, 3)
            record.update(formatted)
            logging.getLogger(tag).info(json.dumps(record))
        elif self.format == "simple":
            body = ", ".join(f"{k}={v}" for k, v in formatted.items())
            logging.getLogger(tag).info(f"epoch {self.epoch:03d}: {step:>6d} / {self.total} {body}")
        elif self.format == "tqdm" and self._bar is not None:
            self._bar.set_postfix(OrderedDict(list(formatted.items())[:6]), refresh=False)

    def print(self, stats: Dict, tag: str, step: int) -> None:
        """An end-of-epoch or validation record (train / valid)."""
        formatted = format_stats(stats)
        self._tensorboard(stats, tag, step)
        wandb_log.log(stats, tag, step)
        if self.format == "json":
            record = OrderedDict(epoch=self.epoch)
            record.update(formatted)
            logging.getLogger(tag).info(json.dumps(record))
        elif self.format in ("simple", "tqdm", "none"):
            body = " | ".join(f"{k} {v}" for k, v in formatted.items())
            logging.getLogger(tag).info(f"epoch {self.epoch:03d} | {body}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        for writer in self._tb.values():
            writer.close()
        self._tb = {}

    def _tensorboard(self, stats: Dict, tag: str, step: int) -> None:
        """fairseq's layout, so curves of both overlay: one writer per tag (LOGDIR/train_inner, LOGDIR/train,
        LOGDIR/<valid subset>), scalars keyed by the stat's own name (`loss`, not the log line's `valid_loss`),
        at step num_updates, which is not written itself."""
        if not self.tensorboard_logdir:
            return
        writer = self._tb.get(tag)
        if writer is None:
            writer = self._tb[tag] = summary_writer_class()(os.path.join(self.tensorboard_logdir, tag))
        prefix = tag + "_"
        for key, value in stats.items():
            name = key[len(prefix):] if key.startswith(prefix) else key
            if name == "num_updates":
                continue
            try:
                writer.add_scalar(name, float(value), step)
            except (TypeError, ValueError):
                pass
        writer.flush()


TENSORBOARD_MISSING = ("--tensorboard-logdir needs tensorboard, which is not installed: "
                       "pip install -e '.[tensorboard]' (or pip install tensorboard)")


def summary_writer_class():
    """torch's SummaryWriter; the optional tensorboard package (the `tensorboard` extra) provides it."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ValueError(TENSORBOARD_MISSING) from None
    return SummaryWriter


def check_tensorboard(logdir: Optional[str]) -> None:
    """At start-up, before any work: one clear error when --tensorboard-logdir is given without tensorboard."""
    if logdir:
        summary_writer_class()
