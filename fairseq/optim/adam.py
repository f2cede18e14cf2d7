"""fairseq's Adam (FAIRSEQ_SPEC section 6), on torch's fused one-pass Adam kernel.

Why not torch.optim.AdamW: fairseq adds eps to the *uncorrected* sqrt(v) and folds both bias
corrections into the step size (lr * sqrt(1 - b2^t) / (1 - b1^t)); torch adds eps after dividing
sqrt(v) by sqrt(1 - b2^t). The two differ by O(eps) per element, enough to drift from fairseq's
trajectory. Weight decay is decoupled (p -= lr * wd * p) and applies to every parameter.

Fused: torch._fused_adamw_ reads p, g, m, v once and writes p, m, v once (about 4x faster on CPU than
the eight multi-tensor passes: 6.3 vs 25.6 ms per step for the quickstart model's 3.4M parameters, one
thread; the step is ~5% of a quickstart update). Its formula is torch's, and fairseq's follows from it
exactly by passing eps / sqrt(1 - b2^t) as its eps: torch's denominator sqrt(v) / sqrt(1 - b2^t) + eps'
then equals fairseq's (sqrt(v) + eps) / sqrt(1 - b2^t), and its step lr / (1 - b1^t) over that is
fairseq's step size over sqrt(v) + eps. The results agree with the op-by-op reference to fp32 rounding
(tests/test_optim.py); `fused=False` keeps the multi-tensor ops.

Parameters without a gradient are skipped (their state is not even created), as in fairseq, so a
checkpoint's optimizer state has one entry per *used* parameter.
"""
from __future__ import annotations

import ast
import math
from typing import Iterable, List

import torch

from fairseq.optim.fairseq_optimizer import FairseqOptimizer, register_optimizer


def parse_betas(value, flag: str = "--adam-betas") -> tuple:
    """'(0.9, 0.98)' / '0.9,0.98' / (0.9, 0.98) -> (0.9, 0.98), with a clear error naming `flag` otherwise."""
    if isinstance(value, (tuple, list)):
        betas = tuple(float(b) for b in value)
    else:
        text = str(value).strip()
        try:
            parsed = ast.literal_eval(text if text.startswith(("(", "[")) else f"({text})")
            betas = tuple(float(b) for b in parsed)
        except (ValueError, SyntaxError, TypeError):
            raise ValueError(f"{flag} {value!r}: expected two floats like '(0.9, 0.999)'") from None
    if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        raise ValueError(f"{flag} {value!r}: expected two floats in [0, 1) like '(0.9, 0.999)'")
    return betas


class Adam(torch.optim.Optimizer):
    """fairseq Adam; `fused=False`: multi-tensor ops; `foreach=False`: the per-tensor reference (tests)."""

    def __init__(self, params: Iterable, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, foreach: bool = True, fused: bool = True):
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=False)
        super().__init__(params, defaults)
        self.foreach = foreach
        self.fused = fused

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if self.foreach:
                self._step_foreach(group, params)
            else:
                for p in params:
                    self._step_one(group, p)
        return loss

    def _state(self, p):
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p, dtype=torch.float32, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, dtype=torch.float32, memory_format=torch.preserve_format)
        return state

    @staticmethod
    def _step_size(group, step: int) -> float:
        beta1, beta2 = group["betas"]
        return group["lr"] * math.sqrt(1 - beta2 ** step) / (1 - beta1 ** step)

    def _step_one(self, group, p):
        """The obvious per-tensor reference (also the path for non-fp32 parameters)."""
        beta1, beta2 = group["betas"]
        grad = p.grad.float()
        p32 = p.float() if p.dtype != torch.float32 else p
        state = self._state(p)
        state["step"] += 1
        state["exp_avg"].mul_(beta1).add_(grad, alpha=1 - beta1)
        state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = state["exp_avg_sq"].sqrt().add_(group["eps"])
        if group["weight_decay"] != 0:
            p32.add_(p32, alpha=-group["weight_decay"] * group["lr"])
        p32.addcdiv_(state["exp_avg"], denom, value=-self._step_size(group, state["step"]))
        if p32 is not p:
            p.copy_(p32)

    def _step_foreach(self, group, params: List[torch.Tensor]):
        beta1, beta2 = group["betas"]
        fast = [p for p in params if p.dtype == torch.float32 and p.grad.dtype == torch.float32]
        for p in params:
            if not (p.dtype == torch.float32 and p.grad.dtype == torch.float32):
                self._step_one(group, p)
        # Parameters are grouped by step count (normally all equal) so each group shares a step size.
        by_step = {}
        for p in fast:
            state = self._state(p)
            state["step"] += 1
            by_step.setdefault((state["step"], p.device), []).append(p)
        for (step, device), ps in by_step.items():
            grads = [p.grad for p in ps]
            m = [self.state[p]["exp_avg"] for p in ps]
            v = [self.state[p]["exp_avg_sq"] for p in ps]
            if self.fused:
                steps = [torch.tensor(float(step), device=device)] * len(ps)  # read, not written, by the kernel
                torch._fused_adamw_(ps, grads, m, v, [], steps, lr=group["lr"], beta1=beta1, beta2=beta2,
                                    weight_decay=group["weight_decay"],
                                    eps=group["eps"] / math.sqrt(1 - beta2 ** step), amsgrad=False, maximize=False)
                continue
            torch._foreach_mul_(m, beta1)
            torch._foreach_add_(m, grads, alpha=1 - beta1)
            torch._foreach_mul_(v, beta2)
            torch._foreach_addcmul_(v, grads, grads, value=1 - beta2)
            denom = torch._foreach_sqrt(v)
            torch._foreach_add_(denom, group["eps"])
            if group["weight_decay"] != 0:
                torch._foreach_add_(ps, ps, alpha=-group["weight_decay"] * group["lr"])
            torch._foreach_addcdiv_(ps, m, denom, value=-self._step_size(group, step))


@register_optimizer("adam")
class FairseqAdam(FairseqOptimizer):
    """The --optimizer adam wrapper: flags, lr get/set, and (de)serialisable state."""

    @classmethod
    def add_args(cls, parser):
        g = parser.add_argument_group("optimizer")
        g.add_argument("--adam-betas", default="(0.9, 0.999)", metavar="B", help="betas for Adam")
        g.add_argument("--adam-eps", type=float, default=1e-8, metavar="D", help="epsilon for Adam")
        g.add_argument("--weight-decay", "--wd", default=0.0, type=float, metavar="WD", help="weight decay")

    def __init__(self, args, params):
        super().__init__(args)
        lr = args.lr[0] if isinstance(args.lr, (list, tuple)) else float(args.lr)
        self.optimizer = Adam(list(params), lr=lr, betas=parse_betas(args.adam_betas),
                              eps=float(args.adam_eps), weight_decay=float(args.weight_decay))

    def load_state_dict(self, state: dict, optimizer_overrides=None) -> None:
        self.optimizer.load_state_dict(state)
        for s in self.optimizer.state.values():  # fairseq/torch may store the step as a tensor
            if torch.is_tensor(s.get("step")):
                s["step"] = int(s["step"].item())
