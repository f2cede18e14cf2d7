"""The --lr-scheduler table (fairseq's register_lr_scheduler / LR_SCHEDULER_REGISTRY), in a module of its
own so each schedule module can register itself without importing the package that imports it."""
from __future__ import annotations

from fairseq import registry
from fairseq.optim.lr_scheduler.fairseq_lr_scheduler import FairseqLRScheduler

_TABLE = registry.setup_registry("lr-scheduler", base_class=FairseqLRScheduler)
LR_SCHEDULER_REGISTRY = _TABLE.classes
LR_SCHEDULER_DATACLASS_REGISTRY = _TABLE.dataclasses


def register_lr_scheduler(name: str, dataclass=None):
    """Class decorator: `--lr-scheduler name` builds this class (a FairseqLRScheduler) as cls(cfg, optimizer)."""
    return _TABLE.register(name, dataclass)


def build_lr_scheduler(cfg, optimizer):
    """The schedule `cfg.lr_scheduler` names, on `optimizer` (a FairseqOptimizer)."""
    return registry.lookup("lr-scheduler", cfg.lr_scheduler)(cfg, optimizer)
