"""--lr-scheduler fixed (fairseq's default): --lr per epoch, a linear warm-up, and --force-anneal.

Epoch e runs at lrs[min(e - 1, len - 1)] of the --lr list; from epoch --force-anneal on at
lrs[-1] * --lr-shrink^(e + 1 - force_anneal). Updates n < --warmup-updates scale it by (n + 1) / warmup.
"""
from __future__ import annotations

from fairseq.optim.lr_scheduler.fairseq_lr_scheduler import FairseqLRScheduler
from fairseq.optim.lr_scheduler.registry import register_lr_scheduler


@register_lr_scheduler("fixed")
class FixedLRSchedule(FairseqLRScheduler):
    @staticmethod
    def add_args(parser):
        g = parser.add_argument_group("lr_scheduler")
        g.add_argument("--force-anneal", type=int, default=None, metavar="N",
                       help="from epoch N on, shrink the lr by --lr-shrink every epoch")
        g.add_argument("--lr-shrink", default=0.1, type=float, metavar="LS",
                       help="the factor of each annealing step")
        g.add_argument("--warmup-updates", default=0, type=int, metavar="N", help="warm the lr up over N updates")

    def __init__(self, args, optimizer):
        super().__init__(args, optimizer)
        self.lrs = [float(v) for v in args.lr] if isinstance(args.lr, (list, tuple)) else [float(args.lr)]
        self.lr = self.lrs[0]
        self.warmup = int(args.warmup_updates)
        self.force_anneal = args.force_anneal
        self.lr_shrink = float(args.lr_shrink)
        self.warmup_factor = 1.0 / self.warmup if self.warmup > 0 else 1

    def state_dict(self) -> dict:
        return {"lr": self.lr}

    def load_state_dict(self, state: dict) -> None:
        if "lr" in state:
            self.lr = state["lr"]

    def lr_of_epoch(self, epoch: int) -> float:
        if self.force_anneal is None or epoch < self.force_anneal:
            return self.lrs[min(epoch - 1, len(self.lrs) - 1)]
        return self.lrs[-1] * self.lr_shrink ** (epoch + 1 - self.force_anneal)

    def step_begin_epoch(self, epoch: int):
        self.lr = self.lr_of_epoch(epoch)
        self.optimizer.set_lr(self.warmup_factor * self.lr)
        return self.optimizer.get_lr()

    def step_update(self, num_updates: int) -> float:
        if self.warmup > 0 and num_updates < self.warmup:
            self.warmup_factor = (num_updates + 1) / float(self.warmup)
            self.optimizer.set_lr(self.warmup_factor * self.lr)
        else:
            self.optimizer.set_lr(self.lr)
        return self.optimizer.get_lr()
