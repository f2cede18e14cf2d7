"""--lr-scheduler reduce_lr_on_plateau: after a linear warm-up, torch's ReduceLROnPlateau on the epochs'
validation losses (the lr times --lr-shrink after --lr-patience epochs without an improvement of
--lr-threshold, relative; higher is better with --maximize-best-checkpoint-metric).

fairseq saves only the plateau's best value and epoch; the count of epochs without improvement is
saved here too (fairseq ignores the extra key), so a resumed run reduces the lr when an uninterrupted
one would.
"""
from __future__ import annotations

import torch

from fairseq.optim.lr_scheduler.fairseq_lr_scheduler import FairseqLRScheduler, single_lr, warmup_init_lr
from fairseq.optim.lr_scheduler.registry import register_lr_scheduler


@register_lr_scheduler("reduce_lr_on_plateau")
class ReduceLROnPlateauLRSchedule(FairseqLRScheduler):
    @staticmethod
    def add_args(parser):
        g = parser.add_argument_group("lr_scheduler")
        g.add_argument("--lr-shrink", default=0.1, type=float, metavar="LS", help="the factor of each reduction")
        g.add_argument("--lr-threshold", default=1e-4, type=float, metavar="LT",
                       help="the relative improvement that counts as one")
        g.add_argument("--lr-patience", default=0, type=int, metavar="N",
                       help="epochs without improvement before the lr is reduced")
        g.add_argument("--warmup-updates", default=0, type=int, metavar="N", help="warm the lr up over N updates")
        g.add_argument("--warmup-init-lr", default=-1, type=float, metavar="LR",
                       help="the lr the warm-up starts from (default 0 with a warm-up, else --lr)")

    def __init__(self, args, optimizer):
        super().__init__(args, optimizer)
        peak = single_lr(args, "reduce_lr_on_plateau")
        if not float(args.lr_shrink) < 1:
            raise ValueError(f"--lr-shrink {args.lr_shrink:g}: reduce_lr_on_plateau needs a factor below 1")
        self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer.optimizer, patience=int(args.lr_patience), factor=float(args.lr_shrink),
            mode="max" if getattr(args, "maximize_best_checkpoint_metric", False) else "min",
            threshold=float(args.lr_threshold))
        self.warmup = int(args.warmup_updates)
        self.init = warmup_init_lr(args, 0.0 if self.warmup > 0 else peak)
        if self.warmup > 0:
            self.lr_step = (peak - self.init) / self.warmup
        self.warmup_end = self.warmup <= 0
        self.lr = peak if self.warmup_end else self.init
        optimizer.set_lr(self.lr)

    def state_dict(self) -> dict:
        return {"best": self.plateau.best, "last_epoch": self.plateau.last_epoch,
                "num_bad_epochs": self.plateau.num_bad_epochs}

    def load_state_dict(self, state: dict) -> None:
        self.plateau.best = state["best"]
        if "last_epoch" in state:
            self.plateau.last_epoch = state["last_epoch"]
        if "num_bad_epochs" in state:
            self.plateau.num_bad_epochs = state["num_bad_epochs"]

    def step(self, epoch: int, val_loss=None):
        """Only a validated epoch after the warm-up counts toward the plateau."""
        if val_loss is not None and self.warmup_end:
            self.plateau.step(val_loss)
        else:
            self.plateau.last_epoch = epoch
        return self.optimizer.get_lr()

    def step_update(self, num_updates: int) -> float:
        if self.warmup > 0:
            if num_updates <= self.warmup:
                self.lr = self.init + num_updates * self.lr_step
                self.optimizer.set_lr(self.lr)
            elif not self.warmup_end:
                self.warmup_end = True
        return self.optimizer.get_lr()
