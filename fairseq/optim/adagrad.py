"""--optimizer adagrad: torch.optim.Adagrad with --weight-decay, as in fairseq 0.12.2 (the same torch class)."""
from __future__ import annotations

import torch

from fairseq.optim.fairseq_optimizer import LegacyFairseqOptimizer, first_lr, register_optimizer


@register_optimizer("adagrad")
class Adagrad(LegacyFairseqOptimizer):
    @staticmethod
    def add_args(parser):
        g = parser.add_argument_group("optimizer")
        g.add_argument("--weight-decay", "--wd", default=0.0, type=float, metavar="WD", help="weight decay")

    def __init__(self, args, params):
        super().__init__(args)
        self.optimizer = torch.optim.Adagrad(list(params), lr=first_lr(args), weight_decay=float(args.weight_decay))
