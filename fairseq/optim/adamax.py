"""--optimizer adamax: Adam's infinity-norm variant (Kingma & Ba, 2015, section 7.1), as fairseq has it.

    m <- b1 * m + (1 - b1) * g
    u <- max(b2 * u, |g|)
    p <- p - lr * wd * p                      (decoupled weight decay)
    p <- p - lr / (1 - b1^t) * m / (u + eps)  (without the 1 - b1^t under --no-bias-correction)
State: `step`, `exp_avg`, `exp_inf` per parameter (fairseq's names).
"""
from __future__ import annotations

import torch

from fairseq.optim.adam import parse_betas
from fairseq.optim.fairseq_optimizer import LegacyFairseqOptimizer, first_lr, register_optimizer


class Adamax(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 2e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                 bias_correction: bool = True):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      bias_correction=bias_correction))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad.float()
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_inf"] = torch.zeros_like(p)
                m, u = state["exp_avg"], state["exp_inf"]
                state["step"] += 1
                m.mul_(beta1).add_(g, alpha=1 - beta1)
                torch.max(u.mul_(beta2), g.abs(), out=u)
                step_size = group["lr"]
                if group["bias_correction"]:
                    step_size /= 1 - beta1 ** state["step"]
                if group["weight_decay"] != 0:
                    p.add_(p, alpha=-group["weight_decay"] * group["lr"])
                p.addcdiv_(m, u.add(group["eps"]), value=-step_size)
        return loss


@register_optimizer("adamax")
class FairseqAdamax(LegacyFairseqOptimizer):
    @staticmethod
    def add_args(parser):
        g = parser.add_argument_group("optimizer")
        g.add_argument("--adamax-betas", default="(0.9, 0.999)", metavar="B", help="betas for Adamax")
        g.add_argument("--adamax-eps", type=float, default=1e-8, metavar="D", help="epsilon for Adamax")
        g.add_argument("--weight-decay", "--wd", default=0.0, type=float, metavar="WD", help="weight decay")
        g.add_argument("--no-bias-correction", default=False, action="store_true",
                       help="do not divide the step by 1 - beta1^t")

    def __init__(self, args, params):
        super().__init__(args)
        self.optimizer = Adamax(list(params), lr=first_lr(args), betas=parse_betas(args.adamax_betas, "--adamax-betas"),
                                eps=float(args.adamax_eps), weight_decay=float(args.weight_decay),
                                bias_correction=not args.no_bias_correction)
