"""--lr-scheduler polynomial_decay: linear warm-up to --lr, then (lr - end) * remaining^power + end.

`remaining` = 1 - (n - warmup) / (total - warmup), total = --total-num-update (default --max-update);
from `total` on the lr is --end-learning-rate (also after a warm-up that ends beyond `total`, as in fairseq:
a recipe cut short with --max-update still runs). fairseq's per-epoch hook also reads --lr as a list
(epoch e takes lrs[min(e, len - 1)], an index one past fixed's) and, from epoch --force-anneal on,
freezes the peak at the lr of that moment.
"""
from __future__ import annotations

from fairseq.optim.lr_scheduler.fairseq_lr_scheduler import FairseqLRScheduler
from fairseq.optim.lr_scheduler.registry import register_lr_scheduler


@register_lr_scheduler("polynomial_decay")
class PolynomialDecayLRSchedule(FairseqLRScheduler):
    @staticmethod
    def add_args(parser):
        g = parser.add_argument_group("lr_scheduler")
        g.add_argument("--warmup-updates", default=0, type=int, metavar="N", help="warm the lr up over N updates")
        g.add_argument("--force-anneal", type=int, default=None, metavar="N",
                       help="from epoch N on, keep the peak lr at its value then")
        g.add_argument("--end-learning-rate", default=0.0, type=float, help="the lr at the end of the decay")
        g.add_argument("--power", default=1.0, type=float, help="decay exponent")
        g.add_argument("--total-num-update", default=None, type=float,
                       help="updates until the lr reaches --end-learning-rate (default: --max-update)")

    def __init__(self, args, optimizer):
        super().__init__(args, optimizer)
        self.lrs = [float(v) for v in args.lr] if isinstance(args.lr, (list, tuple)) else [float(args.lr)]
        self.lr = self.lrs[0]
        self.warmup = int(args.warmup_updates)
        total = args.total_num_update if args.total_num_update is not None else getattr(args, "max_update", 0)
        self.total = float(total or 0)
        if self.total <= 0:
            raise ValueError("--lr-scheduler polynomial_decay needs --total-num-update or --max-update > 0")
        self.end = float(args.end_learning_rate)
        self.power = float(args.power)
        self.force_anneal = args.force_anneal
        self.warmup_factor = 1.0 / self.warmup if self.warmup > 0 else 1
        optimizer.set_lr(self.warmup_factor * self.lr)

    def step_begin_epoch(self, epoch: int):
        if self.force_anneal is None or epoch < self.force_anneal:
            self.lr = self.lrs[min(epoch, len(self.lrs) - 1)]
        else:
            self.lr = self.optimizer.get_lr()
        self.optimizer.set_lr(self.warmup_factor * self.lr)
        return self.optimizer.get_lr()

    def step_update(self, num_updates: int) -> float:
        if self.warmup > 0 and num_updates <= self.warmup:
            self.warmup_factor = num_updates / float(self.warmup)
            lr = self.warmup_factor * self.lr
        elif num_updates >= self.total:
            lr = self.end
        else:
            remaining = 1 - (num_updates - self.warmup) / (self.total - self.warmup)
            lr = (self.lr - self.end) * remaining ** self.power + self.end
        self.optimizer.set_lr(lr)
        return self.optimizer.get_lr()
