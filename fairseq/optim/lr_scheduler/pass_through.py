"""--lr-scheduler pass_through: the optimizer schedules its own lr (an optimizer with an `lr_scheduler`,
such as fairseq's composite optimizer or a --user-dir one); its per-update and epoch-start hooks and
its state are the optimizer's (the epoch-end hook only tracks the best loss, as in fairseq)."""
from __future__ import annotations

from fairseq.optim.lr_scheduler.fairseq_lr_scheduler import FairseqLRScheduler
from fairseq.optim.lr_scheduler.registry import register_lr_scheduler


@register_lr_scheduler("pass_through")
class PassThroughScheduleSchedule(FairseqLRScheduler):
    def __init__(self, args, optimizer):
        super().__init__(args, optimizer)
        if getattr(optimizer, "lr_scheduler", None) is None:
            raise ValueError(f"--lr-scheduler pass_through needs an optimizer that schedules its own lr "
                             f"(an `lr_scheduler` attribute); --optimizer {getattr(args, 'optimizer', '?')} "
                             "has none")

    def state_dict(self) -> dict:
        return self.optimizer.lr_scheduler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.lr_scheduler.load_state_dict(state)

    def step_begin_epoch(self, epoch: int):
        return self.optimizer.lr_scheduler.step_begin_epoch(epoch)

    def step_update(self, num_updates: int):
        return self.optimizer.lr_scheduler.step_update(num_updates)
