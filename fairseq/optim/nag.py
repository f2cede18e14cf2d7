"""--optimizer nag: fairseq's Nesterov accelerated gradient (Sutskever et al., 2013), in the form that
keeps the look-ahead folded into the parameters.

With buffer b (the last step's velocity), momentum mu and lr, one update is
    p <- p * (1 - lr * wd)                    (decoupled weight decay, when --weight-decay > 0)
    p <- p + mu^2 * c * b - (1 + mu) * lr * g
    b <- mu * c * b - lr * g
where c = lr / lr_of_the_previous_step rescales the old velocity when the schedule changes the lr
(fairseq uses c = lr when the previous lr was 0). State: `momentum_buffer` per parameter and
`lr_old` per group, fairseq's names, so checkpoints load either way.
"""
from __future__ import annotations

import torch

from fairseq.optim.fairseq_optimizer import FairseqOptimizer, first_lr, register_optimizer


class NAG(torch.optim.Optimizer):
    def __init__(self, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, lr_old=lr, momentum=momentum, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            wd, mu, lr = group["weight_decay"], group["momentum"], group["lr"]
            lr_old = group.get("lr_old", lr)
            correction = lr / lr_old if lr_old > 0 else lr
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad.float()
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(g)
                buf = state["momentum_buffer"]
                if wd != 0:
                    p.mul_(1 - lr * wd)
                p.add_(buf, alpha=mu * mu * correction)
                p.add_(g, alpha=-(1 + mu) * lr)
                buf.mul_(mu * correction).add_(g, alpha=-lr)
            group["lr_old"] = lr
        return loss


@register_optimizer("nag")
class FairseqNAG(FairseqOptimizer):
    @staticmethod
    def add_args(parser):
        g = parser.add_argument_group("optimizer")
        g.add_argument("--momentum", default=0.99, type=float, metavar="M", help="momentum factor")
        g.add_argument("--weight-decay", "--wd", default=0.0, type=float, metavar="WD", help="weight decay")

    def __init__(self, args, params):
        super().__init__(args)
        self.optimizer = NAG(list(params), lr=first_lr(args), momentum=float(args.momentum),
                             weight_decay=float(args.weight_decay))
