"""FairseqLRScheduler: fairseq's base class of the --lr-scheduler table, with its hooks and timing.

The trainer drives a schedule in fairseq 0.12.2's order (fairseq/trainer.py, fairseq_cli/train.py):
`step_update(0)` when it is built; `step(epoch)` + `step_update(n)` after a checkpoint is loaded (or
none was); `step_begin_epoch(epoch)` + `step_update(n)` as each epoch begins; `step_update(n)` after
the n-th update; `step(epoch, val_loss)` + `step_update(n)` as each epoch ends. The lr used for update
u is therefore the one set after update u - 1 (with a warm-up, update 1 runs at the warm-up's first lr).
Each schedule writes its arithmetic in the order fairseq does, so the values agree to the last bit
(e.g. (9/10) * 5e-4 = 4.5000000000000004e-4); tests/test_lr_schedulers.py holds them to fairseq's.
"""
from __future__ import annotations

from fairseq.dataclass.flags import add_registered_args


def single_lr(args, name: str) -> float:
    """The one --lr a schedule takes; several (fairseq's per-epoch list) is an error naming `name`."""
    lr = args.lr
    if isinstance(lr, (list, tuple)):
        if len(lr) != 1:
            raise ValueError(f"--lr {','.join(map(str, lr))}: --lr-scheduler {name} takes one learning rate; "
                             "per-epoch lists are --lr-scheduler fixed's")
        return float(lr[0])
    return float(lr)


def warmup_init_lr(args, default: float) -> float:
    """--warmup-init-lr, or `default` where it is negative (fairseq's 'not given')."""
    init = float(args.warmup_init_lr)
    return init if init >= 0 else default


class FairseqLRScheduler:
    """fairseq's base: built as cls(cfg, optimizer); the hooks below do nothing but track the best loss."""

    def __init__(self, cfg, optimizer):
        self.cfg = cfg
        self.args = cfg
        self.optimizer = optimizer
        self.best = None

    @classmethod
    def add_args(cls, parser):
        add_registered_args(cls, parser, "lr_scheduler")

    def state_dict(self) -> dict:
        return {"best": self.best}

    def load_state_dict(self, state: dict) -> None:
        self.best = state.get("best")

    def step_begin_epoch(self, epoch: int):
        """As epoch `epoch` begins (the trainer calls step_update right after)."""

    def step(self, epoch: int, val_loss=None):
        """As epoch `epoch` ends, with its first validation loss (None when not validated)."""
        if val_loss is not None:
            self.best = val_loss if self.best is None else min(self.best, val_loss)
        return self.optimizer.get_lr()

    def step_update(self, num_updates: int) -> float:
        """After update `num_updates`: set and return the lr of the next update."""
        return self.optimizer.get_lr()


class LegacyFairseqLRScheduler(FairseqLRScheduler):
    """fairseq's base for schedules that take an argparse Namespace (here every cfg is one)."""
