"""fairseq's checkpoint file names and keep rules (FAIRSEQ_SPEC section 7).

Which files a save writes (checkpoint<epoch>.pt, checkpoint_<epoch>_<updates>.pt, checkpoint_best.pt,
checkpoint.best_<metric>_<value>.pt, checkpoint_last.pt, each with --checkpoint-suffix) and which old
ones --keep-interval-updates / --keep-last-epochs / --keep-best-checkpoints delete afterwards.
"""
from __future__ import annotations

import os
import re
from typing import List, Optional

import numpy as np


def checkpoint_names(args, epoch: int, updates: int, end_of_epoch: bool, val_loss: Optional[float],
                     best: Optional[float]) -> List[str]:
    """fairseq's file names to write for this save, in fairseq's order."""
    suffix = getattr(args, "checkpoint_suffix", "") or ""
    new_best = val_loss is not None and (best is None or is_better(args, val_loss, best))
    conds = [
        (f"checkpoint{epoch}{suffix}.pt",
         end_of_epoch and not args.no_epoch_checkpoints and epoch % args.save_interval == 0),
        (f"checkpoint_{epoch}_{updates}{suffix}.pt",
         not end_of_epoch and args.save_interval_updates > 0 and updates % args.save_interval_updates == 0),
        (f"checkpoint_best{suffix}.pt", new_best),
    ]
    if val_loss is not None and getattr(args, "keep_best_checkpoints", -1) > 0:
        conds.append(_best_n_name(args, epoch, updates, float(val_loss), best, suffix))
    conds.append((f"checkpoint_last{suffix}.pt", not args.no_last_checkpoints))
    return [name for name, ok in conds if ok]


def _best_n_pattern(args, suffix: str) -> str:
    return rf"checkpoint\.best_{re.escape(args.best_checkpoint_metric)}_(\d+\.?\d*){re.escape(suffix)}\.pt"


def _best_n_name(args, epoch: int, updates: int, val_loss: float, best: Optional[float], suffix: str):
    """fairseq 0.12.2's --keep-best-checkpoints file: checkpoint.best_<metric>_<value:.3f><digit><suffix>.pt.

    The digit (0..N-1, seeded by epoch, updates and value) tells apart equal values; it stays part of
    the number when files are ranked, as in fairseq. A file is written when the value beats the worst
    one on disk (or, with none on disk, when it is the best so far).
    """
    kept = _matching(args.save_dir, _best_n_pattern(args, suffix))
    if kept:
        worst = kept[0][0] if not getattr(args, "maximize_best_checkpoint_metric", False) else kept[-1][0]
    else:
        pick = max if getattr(args, "maximize_best_checkpoint_metric", False) else min
        worst = val_loss if best is None else pick(best, val_loss)
    seed = int(hash((epoch, updates, val_loss)) % 1e6)  # fairseq's numpy_seed(epoch, updates, val_loss)
    digit = np.random.RandomState(seed).randint(0, args.keep_best_checkpoints)
    name = f"checkpoint.best_{args.best_checkpoint_metric}_{val_loss:.3f}{digit}{suffix}.pt"
    return name, is_better(args, val_loss, worst)


def is_better(args, a: float, b: float) -> bool:
    return a >= b if getattr(args, "maximize_best_checkpoint_metric", False) else a <= b


def _matching(save_dir: str, pattern: str):
    """[(number in group 1, name)] of the files in save_dir matching pattern, largest number first."""
    found = []
    for name in os.listdir(save_dir) if os.path.isdir(save_dir) else []:
        m = re.fullmatch(pattern, name)
        if m:
            found.append((float(m.group(1)), name))
    return sorted(found, reverse=True)


def _remove(save_dir: str, entries) -> None:
    for _, name in entries:
        os.remove(os.path.join(save_dir, name))


def prune_checkpoints(args) -> None:
    suffix = getattr(args, "checkpoint_suffix", "") or ""
    esc = re.escape(suffix)
    if args.keep_interval_updates > 0:
        found = _matching(args.save_dir, rf"checkpoint_\d+_(\d+){esc}\.pt")
        pattern = getattr(args, "keep_interval_updates_pattern", -1)
        if pattern > 0:  # multiples of the pattern are kept forever and do not count
            found = [(u, n) for u, n in found if int(u) % pattern != 0]
        _remove(args.save_dir, found[args.keep_interval_updates:])
    if args.keep_last_epochs > 0:
        _remove(args.save_dir, _matching(args.save_dir, rf"checkpoint(\d+){esc}\.pt")[args.keep_last_epochs:])
    if getattr(args, "keep_best_checkpoints", -1) > 0:
        found = _matching(args.save_dir, _best_n_pattern(args, suffix))
        if not getattr(args, "maximize_best_checkpoint_metric", False):
            found = found[::-1]
        _remove(args.save_dir, found[args.keep_best_checkpoints:])
