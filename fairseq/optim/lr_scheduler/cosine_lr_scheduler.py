"""--lr-scheduler cosine: SGDR's cosine annealing with warm restarts (Loshchilov & Hutter, 2016).

A linear warm-up from --warmup-init-lr (default --min-lr) to --lr over --warmup-updates, then cosine
periods: the first --lr-period-updates long (default --max-update - --warmup-updates), each next one
--t-mult times longer; period i runs from lr * shrink^i down to min_lr * shrink^i, shrink = --lr-shrink.
"""
from __future__ import annotations

import math

from fairseq.optim.lr_scheduler.fairseq_lr_scheduler import FairseqLRScheduler, single_lr, warmup_init_lr
from fairseq.optim.lr_scheduler.registry import register_lr_scheduler


@register_lr_scheduler("cosine")
class CosineLRSchedule(FairseqLRScheduler):
    @staticmethod
    def add_args(parser):
        g = parser.add_argument_group("lr_scheduler")
        g.add_argument("--warmup-updates", default=0, type=int, metavar="N", help="warm the lr up over N updates")
        g.add_argument("--warmup-init-lr", default=-1, type=float, metavar="LR",
                       help="the lr the warm-up starts from (default --min-lr)")
        g.add_argument("--min-lr", default=0.0, type=float, metavar="LR", help="the lr at the end of each period")
        g.add_argument("--t-mult", default=1.0, type=float, metavar="T", help="each period is T times the last")
        g.add_argument("--lr-period-updates", default=-1, type=float, metavar="N",
                       help="updates in the first period (default: --max-update - --warmup-updates)")
        g.add_argument("--lr-shrink", default=0.1, type=float, metavar="LS",
                       help="each period's lr range is LS times the previous one's")

    def __init__(self, args, optimizer):
        super().__init__(args, optimizer)
        self.max_lr = single_lr(args, "cosine")
        self.min_lr = float(args.min_lr)
        if not self.max_lr > self.min_lr:
            raise ValueError(f"--lr {self.max_lr:g} must exceed --min-lr {self.min_lr:g} (--lr-scheduler cosine)")
        self.warmup = int(args.warmup_updates)
        self.init = warmup_init_lr(args, self.min_lr)
        self.t_mult = float(args.t_mult)
        self.period = float(args.lr_period_updates)
        if self.period <= 0:
            max_update = int(getattr(args, "max_update", 0) or 0)
            if max_update <= 0:
                raise ValueError("--lr-scheduler cosine needs --lr-period-updates or --max-update > 0")
            self.period = max_update - self.warmup
            if self.period <= 0:
                raise ValueError(f"--max-update {max_update} leaves no updates after --warmup-updates {self.warmup}"
                                 " (--lr-scheduler cosine); pass --lr-period-updates")
        self.lr_step = (self.max_lr - self.init) / self.warmup if self.warmup > 0 else 1
        self.lr_shrink = float(args.lr_shrink)
        self.lr = self.init
        optimizer.set_lr(self.lr)

    def step_update(self, num_updates: int) -> float:
        if num_updates < self.warmup:
            self.lr = self.init + num_updates * self.lr_step
        else:
            done = num_updates - self.warmup
            if self.t_mult != 1:
                i = math.floor(math.log(1 - done / self.period * (1 - self.t_mult), self.t_mult))
                t_i = self.t_mult ** i * self.period
                t_curr = done - (1 - self.t_mult ** i) / (1 - self.t_mult) * self.period
            else:
                i = math.floor(done / self.period)
                t_i = self.period
                t_curr = done - (self.period * i)
            shrink = self.lr_shrink ** i
            low, high = self.min_lr * shrink, self.max_lr * shrink
            self.lr = low + 0.5 * (high - low) * (1 + math.cos(math.pi * t_curr / t_i))
        self.optimizer.set_lr(self.lr)
        return self.lr
