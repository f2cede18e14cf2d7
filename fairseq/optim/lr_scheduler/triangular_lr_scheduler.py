"""--lr-scheduler triangular: cyclical lr (Smith, 2015) between --lr and --max-lr.

Each cycle of --lr-period-updates rises linearly from --lr to --max-lr and falls back; cycle c's peak
(and with --shrink-min its floor too) is scaled by --lr-shrink^c.
"""
from __future__ import annotations

import math

from fairseq.optim.lr_scheduler.fairseq_lr_scheduler import FairseqLRScheduler, single_lr
from fairseq.optim.lr_scheduler.registry import register_lr_scheduler


@register_lr_scheduler("triangular")
class TriangularLRSchedule(FairseqLRScheduler):
    @staticmethod
    def add_args(parser):
        g = parser.add_argument_group("lr_scheduler")
        g.add_argument("--max-lr", type=float, default=None, metavar="LR",
                       help="the peak of each cycle (required; must exceed --lr)")
        g.add_argument("--lr-period-updates", default=5000, type=float, metavar="N", help="updates per cycle")
        g.add_argument("--lr-shrink", default=0.1, type=float, metavar="LS", help="each cycle's peak is LS times the last")
        g.add_argument("--shrink-min", action="store_true", help="shrink the floor (--lr) too")

    def __init__(self, args, optimizer):
        super().__init__(args, optimizer)
        self.min_lr = single_lr(args, "triangular")
        if args.max_lr is None:
            raise ValueError("--lr-scheduler triangular needs --max-lr (the peak of each cycle)")
        self.max_lr = float(args.max_lr)
        if not self.max_lr > self.min_lr:
            raise ValueError(f"--max-lr {self.max_lr:g} must exceed --lr {self.min_lr:g} (--lr-scheduler triangular)")
        self.stepsize = float(args.lr_period_updates) // 2
        if self.stepsize <= 0:
            raise ValueError(f"--lr-period-updates {args.lr_period_updates:g}: a triangular cycle needs at least "
                             "2 updates")
        self.lr_shrink = float(args.lr_shrink)
        self.shrink_min = bool(args.shrink_min)
        self.lr = self.min_lr
        optimizer.set_lr(self.lr)

    def step_update(self, num_updates: int) -> float:
        cycle = math.floor(num_updates / (2 * self.stepsize))
        shrink = self.lr_shrink ** cycle
        high = self.max_lr * shrink
        low = self.min_lr * shrink if self.shrink_min else self.min_lr
        x = abs(num_updates / self.stepsize - 2 * (cycle + 1) + 1)
        self.lr = low + (high - low) * max(0, (1 - x))
        self.optimizer.set_lr(self.lr)
        return self.lr
