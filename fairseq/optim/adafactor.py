"""--optimizer adafactor: Adafactor (Shazeer & Stern, 2018) with fairseq 0.12.2's flags and arithmetic.

Per parameter, at step t: beta2_t = 1 - t^--decay-rate; the second moment of g^2 + eps1 is kept
factored for matrices (a row and a column average, whose outer product over the row mean estimates it)
and whole otherwise; the update g / sqrt(v) is divided by max(1, RMS(update) / --clip-threshold), times
the step size, averaged with --beta1 when given (first moment), and subtracted after a decoupled
--weight-decay. The step size is --lr (the schedule's), times max(eps2, RMS(p)) under --scale-parameter.

Where this differs from fairseq: fairseq writes each parameter's step size into its group's lr, so within
one step every later parameter's size is scaled again by the RMS of each earlier one (only when
--scale-parameter is given, and not across steps: the schedule resets the lr every update). Here each
parameter's size is its own, as the paper and fairseq's help describe; with one parameter tensor (and
without --scale-parameter) the two agree to the bit (tests/test_optimizers.py).
--relative-step and --warmup-init stop with fairseq's refusal: it cannot combine them with --lr, which
fairseq-train always sets. Not with --ddp-backend fully_sharded (refused at parse time): the factored
moments average whole rows and columns, which FSDP shards across ranks. State keys are fairseq's (`step`, `exp_avg`, `exp_avg_sq_row`,
`exp_avg_sq_col`, `exp_avg_sq`, `RMS`).
"""
from __future__ import annotations

import ast
import math

import torch

from fairseq.optim.fairseq_optimizer import LegacyFairseqOptimizer, first_lr, register_optimizer

RELATIVE_STEP_REFUSED = ("--relative-step/--warmup-init: fairseq 0.12.2's adafactor cannot combine a relative step "
                         "with --lr, which fairseq-train always sets (it stops with 'Cannot combine manual lr and "
                         "relative_step options'); schedule the lr with --lr-scheduler instead")


def parse_eps_pair(value) -> tuple:
    """--adafactor-eps '(1e-30, 1e-3)' -> (1e-30, 1e-3): the g^2 and the parameter-scale epsilons."""
    try:
        pair = tuple(float(v) for v in (value if isinstance(value, (tuple, list)) else ast.literal_eval(str(value))))
    except (ValueError, SyntaxError, TypeError):
        pair = ()
    if len(pair) != 2 or min(pair) < 0:
        raise ValueError(f"--adafactor-eps {value!r}: expected two floats >= 0 like '(1e-30, 1e-3)'")
    return pair


def _rms(t: torch.Tensor) -> torch.Tensor:
    return t.norm(2) / (t.numel() ** 0.5)


class Adafactor(torch.optim.Optimizer):
    def __init__(self, params, lr: float, eps=(1e-30, 1e-3), clip_threshold: float = 1.0, decay_rate: float = -0.8,
                 beta1=None, weight_decay: float = 0.0, scale_parameter: bool = False, relative_step: bool = False,
                 warmup_init: bool = False):
        if relative_step or warmup_init:
            raise ValueError(RELATIVE_STEP_REFUSED)
        super().__init__(params, dict(lr=lr, eps=tuple(eps), clip_threshold=clip_threshold, decay_rate=decay_rate,
                                      beta1=beta1, weight_decay=weight_decay, scale_parameter=scale_parameter,
                                      relative_step=relative_step, warmup_init=warmup_init))

    @staticmethod
    def _init_state(state, g: torch.Tensor, factored: bool, first_moment: bool) -> None:
        state["step"] = 0
        if first_moment:
            state["exp_avg"] = torch.zeros_like(g)
        if factored:
            state["exp_avg_sq_row"] = torch.zeros(g.shape[:-1]).to(g)
            state["exp_avg_sq_col"] = torch.zeros(g.shape[:-2] + g.shape[-1:]).to(g)
        else:
            state["exp_avg_sq"] = torch.zeros_like(g)
        state["RMS"] = 0

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._step_one(group, p)
        return loss

    def _step_one(self, group, p) -> None:
        g = p.grad.float() if p.grad.dtype in (torch.float16, torch.bfloat16) else p.grad
        factored, first_moment = g.dim() >= 2, group["beta1"] is not None
        state = self.state[p]
        if not state:
            self._init_state(state, g, factored, first_moment)
        state["step"] += 1
        state["RMS"] = _rms(p)
        lr = group["lr"]
        if group["scale_parameter"]:
            lr = max(group["eps"][1], state["RMS"]) * lr
        beta2t = 1.0 - math.pow(state["step"], group["decay_rate"])
        update = (g ** 2) + group["eps"][0]
        if factored:
            row, col = state["exp_avg_sq_row"], state["exp_avg_sq_col"]
            row.mul_(beta2t).add_(update.mean(dim=-1), alpha=1.0 - beta2t)
            col.mul_(beta2t).add_(update.mean(dim=-2), alpha=1.0 - beta2t)
            r = (row / row.mean(dim=-1, keepdim=True)).rsqrt_().unsqueeze(-1)
            update = torch.mul(r, col.unsqueeze(-2).rsqrt())
            update.mul_(g)
        else:
            v = state["exp_avg_sq"]
            v.mul_(beta2t).add_(update, alpha=1.0 - beta2t)
            update = v.rsqrt().mul_(g)
        update.div_((_rms(update) / group["clip_threshold"]).clamp_(min=1.0))
        update.mul_(lr)
        if first_moment:
            m = state["exp_avg"]
            m.mul_(group["beta1"]).add_(update, alpha=1 - group["beta1"])
            update = m
        if group["weight_decay"] != 0:
            p.add_(p, alpha=-group["weight_decay"] * lr)
        p.add_(-update)


@register_optimizer("adafactor")
class FairseqAdafactor(LegacyFairseqOptimizer):
    @staticmethod
    def add_args(parser):
        g = parser.add_argument_group("optimizer")
        g.add_argument("--adafactor-eps", default="(1e-30, 1e-3)", metavar="E",
                       help="epsilons added to g^2 and under the parameter scale")
        g.add_argument("--clip-threshold", type=float, default=1.0, metavar="C",
                       help="clip the update's root mean square to C")
        g.add_argument("--decay-rate", type=float, default=-0.8, metavar="D",
                       help="the second moment's decay: beta2_t = 1 - t^D")
        g.add_argument("--beta1", type=float, default=None, metavar="B",
                       help="keep a first moment with this decay (default: none)")
        g.add_argument("--weight-decay", "--wd", default=0.0, type=float, metavar="WD", help="weight decay")
        g.add_argument("--scale-parameter", action="store_true",
                       help="scale the step size by the parameter's root mean square")
        g.add_argument("--relative-step", action="store_true",
                       help="refused, as in fairseq 0.12.2 (a relative step cannot combine with --lr)")
        g.add_argument("--warmup-init", action="store_true", help="refused with --relative-step")

    def __init__(self, args, params):
        super().__init__(args)
        if getattr(args, "ddp_backend", None) == "fully_sharded":
            raise ValueError("--optimizer adafactor does not run with --ddp-backend fully_sharded here: its factored "
                             "second moments average whole rows and columns, which FSDP splits across ranks; use "
                             "--ddp-backend pytorch_ddp, or another --optimizer")
        self.optimizer = Adafactor(list(params), lr=first_lr(args), eps=parse_eps_pair(args.adafactor_eps),
                                   clip_threshold=float(args.clip_threshold), decay_rate=float(args.decay_rate),
                                   beta1=args.beta1, weight_decay=float(args.weight_decay),
                                   scale_parameter=bool(args.scale_parameter), relative_step=bool(args.relative_step),
                                   warmup_init=bool(args.warmup_init))
