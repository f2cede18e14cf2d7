"""--lr-scheduler tri_stage: warm up, hold, decay exponentially, then hold (SpecAugment, Park et al. 2019).

Warm-up from --init-lr-scale * lr to lr over --warmup-steps, hold lr for --hold-steps, decay as
lr * exp(-k * s) for s = 0 .. --decay-steps with k = -ln(--final-lr-scale) / decay_steps, then stay at
--final-lr-scale * lr. --phase-ratio A,B,C sets the three lengths to int(--max-update * ratio) instead.
"""
from __future__ import annotations

import ast
import math

from fairseq.optim.lr_scheduler.fairseq_lr_scheduler import FairseqLRScheduler, single_lr
from fairseq.optim.lr_scheduler.registry import register_lr_scheduler


def phase_ratio(text):
    """'(0.1, 0.4, 0.5)' or '0.1,0.4,0.5' -> (0.1, 0.4, 0.5): three fractions of --max-update adding up to 1."""
    if text is None or isinstance(text, tuple):
        return text
    try:
        value = ast.literal_eval(str(text).strip())
        ratio = tuple(float(v) for v in value)
    except (ValueError, SyntaxError, TypeError):
        ratio = ()
    if len(ratio) != 3 or min(ratio) < 0 or not math.isclose(sum(ratio), 1.0):
        raise ValueError(f"--phase-ratio {text}: expected three fractions >= 0 adding up to 1, "
                         "like '(0.1, 0.4, 0.5)'")
    return ratio


@register_lr_scheduler("tri_stage")
class TriStageLRSchedule(FairseqLRScheduler):
    @staticmethod
    def add_args(parser):
        g = parser.add_argument_group("lr_scheduler")
        g.add_argument("--warmup-steps", default=0, type=int, metavar="N", help="updates of the warm-up")
        g.add_argument("--hold-steps", default=0, type=int, metavar="N", help="updates at the peak lr")
        g.add_argument("--decay-steps", default=0, type=int, metavar="N", help="updates of the exponential decay")
        g.add_argument("--phase-ratio", default=None, metavar="(W,H,D)",
                       help="the three lengths as fractions of --max-update (overrides the *-steps flags)")
        g.add_argument("--init-lr-scale", default=0.01, type=float, help="the warm-up starts at this times --lr")
        g.add_argument("--final-lr-scale", default=0.01, type=float, help="the decay ends at this times --lr")

    def __init__(self, args, optimizer):
        super().__init__(args, optimizer)
        self.peak_lr = single_lr(args, "tri_stage")
        self.init_lr = float(args.init_lr_scale) * self.peak_lr
        self.final_lr = float(args.final_lr_scale) * self.peak_lr
        ratio = phase_ratio(args.phase_ratio)
        if ratio is not None:
            max_update = int(getattr(args, "max_update", 0) or 0)
            if max_update <= 0:
                raise ValueError("--phase-ratio needs --max-update > 0 (--lr-scheduler tri_stage)")
            self.warmup_steps, self.hold_steps, self.decay_steps = (int(max_update * r) for r in ratio)
        else:
            self.warmup_steps, self.hold_steps = int(args.warmup_steps), int(args.hold_steps)
            self.decay_steps = int(args.decay_steps)
        if self.decay_steps <= 0:
            raise ValueError("--lr-scheduler tri_stage needs a decay stage: --decay-steps > 0, or a --phase-ratio "
                             "whose last fraction of --max-update is at least one update")
        self.warmup_rate = (self.peak_lr - self.init_lr) / self.warmup_steps if self.warmup_steps != 0 else 0
        self.decay_factor = -math.log(float(args.final_lr_scale)) / self.decay_steps
        self.lr = self.init_lr
        optimizer.set_lr(self.lr)

    def stage(self, n: int):
        """(stage 0-3, updates into it) for the lr after `n` updates."""
        if n < self.warmup_steps:
            return 0, n
        offset = self.warmup_steps
        if n < offset + self.hold_steps:
            return 1, n - offset
        offset += self.hold_steps
        if n <= offset + self.decay_steps:
            return 2, n - offset
        return 3, n - offset - self.decay_steps

    def step_update(self, num_updates: int) -> float:
        stage, steps = self.stage(num_updates)
        if stage == 0:
            self.lr = self.init_lr + self.warmup_rate * steps
        elif stage == 1:
            self.lr = self.peak_lr
        elif stage == 2:
            self.lr = self.peak_lr * math.exp(-self.decay_factor * steps)
        else:
            self.lr = self.final_lr
        self.optimizer.set_lr(self.lr)
        return self.lr
