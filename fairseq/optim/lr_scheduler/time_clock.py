"""`--lr-schedule-clock time`: any --lr-scheduler, run on elapsed training time instead of updates.

A budget run (`--stop-time-hours H`) does not know how many updates it will make, so an update-counted
warm-up and decay must be guessed. With this clock the schedule reads a tick count instead of
num_updates: the budget is cut into --lr-schedule-ticks ticks (default 1000), and after an update
    tick = floor(ticks * elapsed_seconds / (3600 * H)),
so every update count of the schedule's flags counts ticks (`--warmup-updates 60` warms up over the first
6% of the budget) and a schedule whose horizon defaults to --max-update (polynomial_decay's
--total-num-update, cosine's period, tri_stage's --phase-ratio) spans exactly the budget. --max-update
keeps its meaning (a stop when > 0); the schedule is built as if it were the tick count.

Elapsed training time is the clock --stop-time-hours reads: the time spent in updates, saved in every
checkpoint (`previous_training_time`) and restored on resume (not with --reset-meters). The tick is taken
at the end of each update, from the time the checkpoint would save then, so a resumed run ticks on exactly
where the uninterrupted one would; with several processes the ranks first agree on their mean time (one
small all-reduce per update), so every rank sets the same lr.
"""
from __future__ import annotations

import argparse
import math
from typing import Callable

from fairseq.optim.lr_scheduler.registry import build_lr_scheduler

CLOCKS = ("updates", "time")


def check_clock_args(args) -> None:
    """The flags the time clock needs, refused at parse time with the flag named."""
    if getattr(args, "lr_schedule_clock", "updates") != "time":
        return
    if not args.stop_time_hours > 0:
        raise ValueError("--lr-schedule-clock time needs --stop-time-hours > 0 (the budget the schedule spans)")
    ticks = int(args.lr_schedule_ticks)
    for flag, dest in (("--total-num-update", "total_num_update"), ("--warmup-updates", "warmup_updates")):
        value = getattr(args, dest, None)
        if value is not None and value > ticks:
            raise ValueError(f"{flag} {value:g}: with --lr-schedule-clock time it counts ticks of the budget, "
                             f"of which there are --lr-schedule-ticks {ticks}")


def tick_args(args) -> argparse.Namespace:
    """A copy of `args` in which --max-update is the tick count (the horizon the schedule is built on)."""
    return argparse.Namespace(**{**vars(args), "max_update": int(args.lr_schedule_ticks)})


class TimeClock:
    """Wraps a built schedule: its hooks see the tick of the elapsed time, not num_updates; its state is
    the wrapped schedule's (checkpoints look the same as with the update clock)."""

    def __init__(self, schedule, elapsed_seconds: Callable[[], float], budget_hours: float, ticks: int):
        self.schedule = schedule
        self.elapsed_seconds = elapsed_seconds
        self.budget_s = 3600.0 * float(budget_hours)
        self.ticks = int(ticks)

    @property
    def optimizer(self):
        return self.schedule.optimizer

    def tick(self) -> int:
        return math.floor(self.ticks * self.elapsed_seconds() / self.budget_s)

    def step_update(self, num_updates: int):
        return self.schedule.step_update(self.tick())

    def step_begin_epoch(self, epoch: int):
        return self.schedule.step_begin_epoch(epoch)

    def step(self, epoch: int, val_loss=None):
        return self.schedule.step(epoch, val_loss)

    def state_dict(self) -> dict:
        return self.schedule.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.schedule.load_state_dict(state)


def build_schedule(args, optimizer, elapsed_seconds: Callable[[], float]):
    """The --lr-scheduler on `optimizer`, on the clock --lr-schedule-clock names (`elapsed_seconds`:
    the elapsed training time, read by the time clock only)."""
    if getattr(args, "lr_schedule_clock", "updates") != "time":
        return build_lr_scheduler(args, optimizer)
    return TimeClock(build_lr_scheduler(tick_args(args), optimizer), elapsed_seconds, args.stop_time_hours,
                     args.lr_schedule_ticks)
