"""--seq-len-schedule: train on shorter blocks first, then at the full --tokens-per-sample.

BERT pretrained at 128 tokens for 90% of its steps and at 512 for the rest; Composer's sequence-length
warmup grows the length in steps. `--seq-len-schedule LEN:AT[,LEN:AT...]` trains on blocks of LEN
tokens (counted as --tokens-per-sample counts them, <s> included) for the updates u < AT (u = updates
completed before the update), each entry taking over where the previous one ends, and at
--tokens-per-sample after the last. AT is an update count (an integer) or a fraction of the run
(a number with a decimal point, 0 < AT < 1, of --max-update, else --total-num-update). Lengths and
switch points increase; every length is below --tokens-per-sample, which sizes the model's positions
and the validation blocks (validation always runs at the full length).

Where the length changes (the trainer's train_length_changed, fairseq-train and side_by_side.Lane):
the train split's blocks are rebuilt, which changes what every batch of the epoch holds, so the
epoch in progress ends at the switch (its remaining short batches are not trained on; it counts as
an epoch for --max-epoch, --save-interval, epoch checkpoints and epoch-based lr schedules) and the
next epoch reads the new blocks in its own shuffle and masks. A checkpoint saved at the switch holds
"next epoch, batch 0"; one saved mid-epoch holds a position in blocks of the length in force at its
update, which is what a resume rebuilds (the trainer asks this schedule at the restored update), so
a run resumed across the switch equals the uninterrupted one (tests/test_seq_len_schedule.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

FLAG = "--seq-len-schedule"


@dataclass(frozen=True)
class SeqLenSchedule:
    """(length, first update that no longer uses it) per entry, then `full` (--tokens-per-sample)."""

    steps: Tuple[Tuple[int, int], ...]
    full: int

    def length_at(self, num_updates: int) -> int:
        """The block length of update u = num_updates (updates completed before it)."""
        for length, until in self.steps:
            if int(num_updates) < until:
                return length
        return self.full

    def lengths(self) -> List[int]:
        return [length for length, _ in self.steps] + [self.full]


def run_length(args) -> Optional[int]:
    """The update count fractions refer to: --max-update, else --total-num-update (None: neither)."""
    return _run_length(lambda name: getattr(args, name, None))


def _run_length(get) -> Optional[int]:
    max_update = int(get("max_update") or 0)
    if max_update > 0:
        return max_update
    total = get("total_num_update")
    return int(total) if total is not None and int(total) > 0 else None


def parse(spec: str, full: int, total: Optional[int]) -> SeqLenSchedule:
    """The schedule `spec` describes, or a ValueError naming the flag and what is wrong."""
    steps = []
    for entry in str(spec).split(","):
        length, sep, at = entry.strip().partition(":")
        if not sep:
            raise ValueError(f"{FLAG} {spec!r}: entry {entry.strip()!r} has no ':AT' (the update it ends at)")
        try:
            length = int(length)
            point = float(at) if "." in at else int(at)
        except ValueError:
            raise ValueError(f"{FLAG} {spec!r}: entry {entry.strip()!r} is not LEN:AT (an integer length, "
                             "then an update count or a fraction of the run such as 0.9)") from None
        if isinstance(point, float):
            if not 0.0 < point < 1.0:
                raise ValueError(f"{FLAG} {spec!r}: fraction {at} must be in (0, 1)")
            if total is None:
                raise ValueError(f"{FLAG} {spec!r}: a fraction of the run needs --max-update (or "
                                 "--total-num-update); or give the switch as an update count")
            point = int(point * total + 1e-9)  # floor, absorbing float fuzz (0.29 * 100)
        if not 2 <= length < full:
            raise ValueError(f"{FLAG} {spec!r}: length {length} must be at least 2 (<s> and a token) and below "
                             f"--tokens-per-sample {full}, the length the model's positions are sized for")
        if point < 1:
            raise ValueError(f"{FLAG} {spec!r}: entry {entry.strip()!r} ends before the first update")
        if steps and not (length > steps[-1][0] and point > steps[-1][1]):
            raise ValueError(f"{FLAG} {spec!r}: lengths and switch points must both increase")
        steps.append((length, point))
    return SeqLenSchedule(tuple(steps), int(full))


def from_args(args) -> Optional[SeqLenSchedule]:
    """The run's schedule (None without --seq-len-schedule)."""
    spec = getattr(args, "seq_len_schedule", None)
    if not spec:
        return None
    return parse(spec, int(args.tokens_per_sample), run_length(args))


def lengths(args) -> List[int]:
    """Every block length the run trains at (--tokens-per-sample alone without a schedule)."""
    schedule = from_args(args)
    return schedule.lengths() if schedule is not None else [int(args.tokens_per_sample)]


def length_at(args, num_updates: int) -> Optional[int]:
    """The block length in force at update `num_updates` under these flags (None: no --tokens-per-sample)."""
    return length_from(lambda name: getattr(args, name, None), num_updates)


def length_from(get, num_updates: int) -> Optional[int]:
    """length_at with each flag's value read by get(dest) (a checkpoint's saved values, say)."""
    tokens_per_sample, spec = get("tokens_per_sample"), get("seq_len_schedule")
    if tokens_per_sample is None:
        return None
    if not spec:
        return int(tokens_per_sample)
    return parse(spec, int(tokens_per_sample), _run_length(get)).length_at(num_updates)
