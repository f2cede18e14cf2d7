"""--optimizer adadelta: torch.optim.Adadelta with --adadelta-rho/--adadelta-eps/--weight-decay, as in
fairseq 0.12.2 (the same torch class). fairseq's --anneal-eps is accepted and, as there, does nothing
(fairseq/flag_audit.py warns once when it is given)."""
from __future__ import annotations

import torch

from fairseq.optim.fairseq_optimizer import LegacyFairseqOptimizer, first_lr, register_optimizer


@register_optimizer("adadelta")
class Adadelta(LegacyFairseqOptimizer):
    @staticmethod
    def add_args(parser):
        g = parser.add_argument_group("optimizer")
        g.add_argument("--adadelta-rho", type=float, default=0.9, metavar="RHO",
                       help="decay of the running averages of squared gradients and updates")
        g.add_argument("--adadelta-eps", type=float, default=1e-6, metavar="EPS",
                       help="added inside the square roots, for numerical stability")
        g.add_argument("--weight-decay", "--wd", default=0.0, type=float, metavar="WD", help="weight decay")
        g.add_argument("--anneal-eps", action="store_true", help="no effect (as in fairseq 0.12.2; warns)")

    def __init__(self, args, params):
        super().__init__(args)
        self.optimizer = torch.optim.Adadelta(list(params), lr=first_lr(args), rho=float(args.adadelta_rho),
                                              eps=float(args.adadelta_eps), weight_decay=float(args.weight_decay))
