"""Optimizers and learning-rate schedules by name (fairseq's register_optimizer and
fairseq.optim.lr_scheduler.register_lr_scheduler); the built-in ones register on import, one module
each as in fairseq 0.12.2: adam, adafactor, sgd, nag, adagrad, adamax, adadelta, lamb (fused_lamb.py)."""
import torch

from fairseq import registry
from fairseq.optim import lr_scheduler  # noqa: F401  (registers the built-in schedules)
from fairseq.optim.adadelta import Adadelta  # noqa: F401
from fairseq.optim.adafactor import FairseqAdafactor  # noqa: F401
from fairseq.optim.adagrad import Adagrad  # noqa: F401
from fairseq.optim.adam import FairseqAdam  # noqa: F401
from fairseq.optim.adamax import FairseqAdamax  # noqa: F401
from fairseq.optim.fairseq_optimizer import (  # noqa: F401
    OPTIMIZER_DATACLASS_REGISTRY,
    OPTIMIZER_REGISTRY,
    FairseqOptimizer,
    LegacyFairseqOptimizer,
    register_optimizer,
)
from fairseq.optim.fused_lamb import FairseqLAMB  # noqa: F401
from fairseq.optim.lr_scheduler import build_lr_scheduler  # noqa: F401
from fairseq.optim.lr_scheduler.time_clock import build_schedule, check_clock_args
from fairseq.optim.nag import FairseqNAG  # noqa: F401
from fairseq.optim.sgd import SGD  # noqa: F401


def build_optimizer(cfg, params):
    return registry.lookup("optimizer", cfg.optimizer)(cfg, params)


def check_args(args) -> None:
    """Build the optimizer and the schedule once on a stand-in parameter, at parse time: every refusal of
    their flags (a missing --max-lr, --min-lr above --lr, a bad --phase-ratio, ...) is then one line
    before any data is read, not an error after the model is built."""
    check_clock_args(args)
    optimizer = build_optimizer(args, [torch.nn.Parameter(torch.zeros(1))])
    build_schedule(args, optimizer, lambda: 0.0)
