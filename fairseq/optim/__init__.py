"""Optimizers and learning-rate schedules by name (fairseq's register_optimizer and
fairseq.optim.lr_scheduler.register_lr_scheduler); the built-in ones register on import."""
from fairseq import registry
from fairseq.optim import lr_scheduler  # noqa: F401  (registers the built-in schedules)
from fairseq.optim.adam import FairseqAdam  # noqa: F401
from fairseq.optim.fairseq_optimizer import (  # noqa: F401
    OPTIMIZER_DATACLASS_REGISTRY,
    OPTIMIZER_REGISTRY,
    FairseqOptimizer,
    register_optimizer,
)


def build_optimizer(cfg, params):
    return registry.lookup("optimizer", cfg.optimizer)(cfg, params)


def build_lr_scheduler(cfg, optimizer):
    return registry.lookup("lr-scheduler", cfg.lr_scheduler)(cfg, optimizer)
