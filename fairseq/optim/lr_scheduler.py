"""Learning-rate schedules with fairseq's update timing (FAIRSEQ_SPEC section 6).

The trainer calls `step_update(0)` once at start and `step_update(n)` after the n-th update, so the
lr used for update u is sched(u - 1) and the lr logged at num_updates = n is sched(n). With a
warm-up, update 1 therefore runs at lr 0, exactly as fairseq does. The arithmetic is written in the
same order as fairseq's so the values agree to the last bit (e.g. (9/10) * 5e-4 = 4.5000000000000004e-4).
"""
from __future__ import annotations

from fairseq import registry
from fairseq.dataclass.flags import add_registered_args

LR_SCHEDULER_REGISTRY = registry.setup_registry("lr-scheduler").classes
LR_SCHEDULER_DATACLASS_REGISTRY = registry.REGISTRIES["lr-scheduler"].dataclasses


def register_lr_scheduler(name: str, dataclass=None):
    """Class decorator: `--lr-scheduler name` builds this class (a FairseqLRScheduler) as cls(cfg, optimizer)."""
    return registry.REGISTRIES["lr-scheduler"].register(name, dataclass)


def _peak_lr(args) -> float:
    lr = args.lr
    if isinstance(lr, (list, tuple)):
        if len(lr) != 1:
            raise ValueError(f"--lr {lr}: this --lr-scheduler takes one learning rate, got {len(lr)}")
        return float(lr[0])
    return float(lr)


class FairseqLRScheduler:
    """fairseq's base: step_update(num_updates) -> lr after each update, step(epoch, val_loss) per epoch."""

    def __init__(self, args, optimizer):
        self.cfg = args
        self.args = args
        self.optimizer = optimizer
        self.best = None

    @classmethod
    def add_args(cls, parser):
        add_registered_args(cls, parser, "lr_scheduler")

    def step_update(self, num_updates: int) -> float:
        lr = self.lr_at(num_updates)
        self.optimizer.set_lr(lr)
        return lr

    def step(self, epoch: int, val_loss=None) -> float:
        """End-of-epoch hook (fairseq's lr_step): tracks the best validation loss only."""
        if val_loss is not None:
            self.best = val_loss if self.best is None else min(self.best, val_loss)
        return self.optimizer.get_lr()

    def state_dict(self) -> dict:
        return {"best": self.best}

    def load_state_dict(self, state: dict) -> None:
        self.best = state.get("best")


@register_lr_scheduler("polynomial_decay")
class PolynomialDecaySchedule(FairseqLRScheduler):
    @staticmethod
    def add_args(parser):
        g = parser.add_argument_group("lr_scheduler")
        g.add_argument("--warmup-updates", default=0, type=int, metavar="N", help="warmup the lr for N updates")
        g.add_argument("--force-anneal", type=int, default=None, metavar="N", help="no effect here (warns)")
        g.add_argument("--end-learning-rate", default=0.0, type=float, help="final learning rate")
        g.add_argument("--power", default=1.0, type=float, help="decay exponent")
        g.add_argument("--total-num-update", default=None, type=float,
                       help="total number of updates of the schedule (default: --max-update)")

    def __init__(self, args, optimizer):
        super().__init__(args, optimizer)
        self.lr = _peak_lr(args)
        self.warmup = int(args.warmup_updates)
        total = args.total_num_update if args.total_num_update is not None else getattr(args, "max_update", 0)
        self.total = float(total or 0)
        if self.total <= 0:
            raise ValueError("--lr-scheduler polynomial_decay needs --total-num-update or --max-update > 0")
        if self.total <= self.warmup:
            raise ValueError(f"--total-num-update {self.total:g} must exceed --warmup-updates {self.warmup}")
        self.end = float(args.end_learning_rate)
        self.power = float(args.power)

    def lr_at(self, n: int) -> float:
        if self.warmup > 0 and n <= self.warmup:
            return (n / float(self.warmup)) * self.lr
        if n >= self.total:
            return self.end
        remaining = 1 - (n - self.warmup) / (self.total - self.warmup)
        return (self.lr - self.end) * remaining ** self.power + self.end


@register_lr_scheduler("inverse_sqrt")
class InverseSquareRootSchedule(FairseqLRScheduler):
    @staticmethod
    def add_args(parser):
        g = parser.add_argument_group("lr_scheduler")
        g.add_argument("--warmup-updates", default=4000, type=int, metavar="N", help="warmup the lr for N updates")
        g.add_argument("--warmup-init-lr", default=-1, type=float, metavar="LR",
                       help="initial lr during warmup (default 0 with warmup, else --lr)")

    def __init__(self, args, optimizer):
        super().__init__(args, optimizer)
        self.lr = _peak_lr(args)
        self.warmup = int(args.warmup_updates)
        init = float(args.warmup_init_lr)
        self.init = init if init >= 0 else (0.0 if self.warmup > 0 else self.lr)
        self.lr_step = (self.lr - self.init) / self.warmup if self.warmup > 0 else 1.0
        self.decay = self.lr * max(self.warmup, 1) ** 0.5

    def lr_at(self, n: int) -> float:
        if n < self.warmup:
            return self.init + n * self.lr_step
        return self.decay * max(n, 1) ** -0.5


@register_lr_scheduler("fixed")
class FixedSchedule(FairseqLRScheduler):
    @staticmethod
    def add_args(parser):
        g = parser.add_argument_group("lr_scheduler")
        g.add_argument("--warmup-updates", default=0, type=int, metavar="N", help="warmup the lr for N updates")

    def __init__(self, args, optimizer):
        super().__init__(args, optimizer)
        self.lr = _peak_lr(args)
        self.warmup = int(args.warmup_updates)

    def lr_at(self, n: int) -> float:
        if self.warmup > 0 and n < self.warmup:
            return ((n + 1) / float(self.warmup)) * self.lr
        return self.lr


registry.REGISTRIES["lr-scheduler"].base_class = FairseqLRScheduler
