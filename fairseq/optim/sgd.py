"""--optimizer sgd: torch.optim.SGD with --momentum and --weight-decay (L2 added to the gradient), as in
fairseq 0.12.2, which uses the same torch class (so its checkpoints' optimizer state loads as is)."""
from __future__ import annotations

import torch

from fairseq.optim.fairseq_optimizer import LegacyFairseqOptimizer, first_lr, register_optimizer


@register_optimizer("sgd")
class SGD(LegacyFairseqOptimizer):
    @staticmethod
    def add_args(parser):
        g = parser.add_argument_group("optimizer")
        g.add_argument("--momentum", default=0.0, type=float, metavar="M", help="momentum factor")
        g.add_argument("--weight-decay", "--wd", default=0.0, type=float, metavar="WD", help="weight decay")

    def __init__(self, args, params):
        super().__init__(args)
        self.optimizer = torch.optim.SGD(list(params), lr=first_lr(args), momentum=float(args.momentum),
                                         weight_decay=float(args.weight_decay))
