"""--optimizer lamb: LAMB (You et al., 2019, "Large Batch Optimization for Deep Learning", Algorithm 2),
native torch, on CPU and CUDA. fairseq 0.12.2 registers `lamb` on apex's FusedLAMB (CUDA only, apex
required); the flags are fairseq's.

Per parameter tensor x (the paper's layer), at step t:
    m <- b1 * m + (1 - b1) * g,   v <- b2 * v + (1 - b2) * g^2
    r  = (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps) + wd * x
    x <- x - lr * (||x|| / ||r||) * r        (trust ratio 1 where either norm is 0)

Where apex's FusedLAMB as fairseq builds it differs: it clips the global gradient norm to 1.0 inside the
optimizer (use --clip-norm here), and with --weight-decay 0 it skips the trust ratio (plain Adam steps).
State keys: `step`, `exp_avg`, `exp_avg_sq` per parameter (apex keeps `step` per group; such a state
loads, its group step taken as each parameter's).
"""
from __future__ import annotations

import torch

from fairseq.optim.adam import parse_betas
from fairseq.optim.fairseq_optimizer import LegacyFairseqOptimizer, first_lr, register_optimizer


class Lamb(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

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
                if "exp_avg" not in state:
                    state["exp_avg"] = torch.zeros_like(p, dtype=torch.float32)
                    state["exp_avg_sq"] = torch.zeros_like(p, dtype=torch.float32)
                state["step"] = int(state.get("step", group.get("step", 0))) + 1
                t = state["step"]
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(beta1).add_(g, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                r = (m / (1 - beta1 ** t)) / ((v / (1 - beta2 ** t)).sqrt_().add_(group["eps"]))
                if group["weight_decay"] != 0:
                    r.add_(p, alpha=group["weight_decay"])
                w_norm, r_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(r)
                trust = torch.where((w_norm > 0) & (r_norm > 0), w_norm / r_norm, torch.ones_like(w_norm))
                p.add_(r * trust, alpha=-group["lr"])
        return loss


@register_optimizer("lamb")
class FairseqLAMB(LegacyFairseqOptimizer):
    @staticmethod
    def add_args(parser):
        g = parser.add_argument_group("optimizer")
        g.add_argument("--lamb-betas", default="(0.9, 0.999)", metavar="B", help="betas for LAMB")
        g.add_argument("--lamb-eps", type=float, default=1e-8, metavar="D", help="epsilon for LAMB")
        g.add_argument("--weight-decay", "--wd", default=0.0, type=float, metavar="WD", help="weight decay")

    def __init__(self, args, params):
        super().__init__(args)
        self.optimizer = Lamb(list(params), lr=first_lr(args), betas=parse_betas(args.lamb_betas, "--lamb-betas"),
                              eps=float(args.lamb_eps), weight_decay=float(args.weight_decay))
