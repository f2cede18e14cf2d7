"""--lr-scheduler step: linear warm-up, then --lr * --lr-decay^floor(k / period), never below --min-lr.

The period flag keeps fairseq 0.12.2's spelling, --lr-deacy-period.
"""
from __future__ import annotations

from fairseq.optim.lr_scheduler.fairseq_lr_scheduler import FairseqLRScheduler, single_lr, warmup_init_lr
from fairseq.optim.lr_scheduler.registry import register_lr_scheduler


@register_lr_scheduler("step")
class StepLRSchedule(FairseqLRScheduler):
    @staticmethod
    def add_args(parser):
        g = parser.add_argument_group("lr_scheduler")
        g.add_argument("--warmup-updates", default=0, type=int, metavar="N", help="warm the lr up over N updates")
        g.add_argument("--warmup-init-lr", default=-1, type=float, metavar="LR",
                       help="the lr the warm-up starts from (default --min-lr)")
        g.add_argument("--min-lr", default=0.0, type=float, metavar="LR", help="the lr never falls below this")
        g.add_argument("--lr-deacy-period", default=25000, type=int, metavar="N",
                       help="decay the lr every N updates after the warm-up (fairseq's spelling)")
        g.add_argument("--lr-decay", default=0.5, type=float, metavar="F", help="the factor of each decay")

    def __init__(self, args, optimizer):
        super().__init__(args, optimizer)
        self.max_lr = single_lr(args, "step")
        self.min_lr = float(args.min_lr)
        if not self.max_lr > self.min_lr:
            raise ValueError(f"--lr {self.max_lr:g} must exceed --min-lr {self.min_lr:g} (--lr-scheduler step)")
        self.period = int(args.lr_deacy_period)
        self.decay = float(args.lr_decay)
        self.warmup = int(args.warmup_updates)
        self.init = warmup_init_lr(args, self.min_lr)
        self.warmup_lr_step = (self.max_lr - self.init) / self.warmup if self.warmup > 0 else 1
        self.lr = self.init
        optimizer.set_lr(self.lr)

    def step_update(self, num_updates: int) -> float:
        if num_updates < self.warmup:
            self.lr = self.init + num_updates * self.warmup_lr_step
        else:
            mult = self.decay ** ((num_updates - self.warmup) // self.period)
            self.lr = max(self.max_lr * mult, self.min_lr)
        self.optimizer.set_lr(self.lr)
        return self.lr
