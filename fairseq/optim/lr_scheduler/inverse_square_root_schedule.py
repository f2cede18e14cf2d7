"""--lr-scheduler inverse_sqrt: linear warm-up from --warmup-init-lr to --lr, then lr * sqrt(warmup / n).

fairseq divides by --warmup-updates (a crash at 0); here 0 means no warm-up and lr / sqrt(max(n, 1)).
"""
from __future__ import annotations

from fairseq.optim.lr_scheduler.fairseq_lr_scheduler import FairseqLRScheduler, single_lr, warmup_init_lr
from fairseq.optim.lr_scheduler.registry import register_lr_scheduler


@register_lr_scheduler("inverse_sqrt")
class InverseSquareRootSchedule(FairseqLRScheduler):
    @staticmethod
    def add_args(parser):
        g = parser.add_argument_group("lr_scheduler")
        g.add_argument("--warmup-updates", default=4000, type=int, metavar="N", help="warm the lr up over N updates")
        g.add_argument("--warmup-init-lr", default=-1, type=float, metavar="LR",
                       help="the lr the warm-up starts from (default 0 with a warm-up, else --lr)")

    def __init__(self, args, optimizer):
        super().__init__(args, optimizer)
        peak = single_lr(args, "inverse_sqrt")
        self.warmup = int(args.warmup_updates)
        self.init = warmup_init_lr(args, 0.0 if self.warmup > 0 else peak)
        self.lr_step = (peak - self.init) / self.warmup if self.warmup > 0 else 1.0
        self.decay = peak * max(self.warmup, 1) ** 0.5
        optimizer.set_lr(self.init)

    def step_update(self, num_updates: int) -> float:
        if num_updates < self.warmup:
            lr = self.init + num_updates * self.lr_step
        else:
            lr = self.decay * max(num_updates, 1) ** -0.5
        self.optimizer.set_lr(lr)
        return lr
