"""How many batches make one update: fairseq's --update-freq (one value per epoch, the last repeating),
ramped up at the start of training by --update-freq-ramp-updates N (a batch-size ramp, as in Geiping &
Goldstein's "Cramming", 2022: small, frequent updates while the loss falls fast, the full batch later).

With the ramp, the update after n updates accumulates 1 + floor((F - 1) * n / N) batches for n < N,
where F is the epoch's --update-freq: 1 batch for the first update, F from update N + 1 on. It depends
only on num_updates, which checkpoints save, and every epoch's position is saved in batches at an update
boundary, so a resumed run groups the batches exactly as an uninterrupted one (tests/test_budget_levers.py).
"""
from __future__ import annotations

import logging

logger = logging.getLogger(__name__)
_warned = []  # once per process, as fairseq/flag_audit.py's warnings (fairseq-hydra-train parses twice)


def update_freq(args, epoch: int, num_updates: int) -> int:
    """Batches in the update that follows `num_updates` updates, in epoch `epoch`."""
    freq = args.update_freq[min(epoch, len(args.update_freq)) - 1]
    ramp = int(getattr(args, "update_freq_ramp_updates", 0) or 0)
    if ramp > 0 and num_updates < ramp:
        return 1 + (freq - 1) * num_updates // ramp
    return freq


def updates_in(batches: int, args, epoch: int, num_updates: int) -> int:
    """How many updates `batches` batches make from `num_updates` on (the last group may be partial)."""
    ramp = int(getattr(args, "update_freq_ramp_updates", 0) or 0)
    count = 0
    while batches > 0 and num_updates + count < ramp:  # at most N steps, then the full --update-freq
        batches -= update_freq(args, epoch, num_updates + count)
        count += 1
    return count + max(0, -(-batches // update_freq(args, epoch, num_updates + count)))


def check_args(args) -> None:
    """A ramp to --update-freq 1 would do nothing: say so once rather than ignore the flag."""
    if int(getattr(args, "update_freq_ramp_updates", 0) or 0) > 0 and max(args.update_freq) == 1 and not _warned:
        _warned.append(True)
        logger.warning(f"--update-freq-ramp-updates {args.update_freq_ramp_updates} has no effect with "
                       "--update-freq 1: the ramp grows the batches per update up to --update-freq")
