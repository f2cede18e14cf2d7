"""FairseqCriterion and the --criterion table (fairseq's register_criterion).

A criterion is built as fairseq builds it: `cls.build_criterion(cfg, task)` passes each argument of
the class's __init__ by name (`task` the task, `cfg` the config, anything else the config's value of
that name, or the parameter's default), so a plugin criterion written for fairseq is built unchanged.

reduce_metrics(logging_outputs) is fairseq's: it logs through fairseq.logging.metrics (ours also return
the values as a dict); fairseq.tasks.base.logged_metrics collects them.
"""
from __future__ import annotations

import inspect
from typing import Dict, List

from torch.nn.modules.loss import _Loss

from fairseq import registry
from fairseq.dataclass.flags import add_registered_args
from fairseq.logging import metrics

CRITERION_REGISTRY = registry.setup_registry("criterion").classes
CRITERION_DATACLASS_REGISTRY = registry.REGISTRIES["criterion"].dataclasses


class FairseqCriterion(_Loss):
    def __init__(self, task):
        super().__init__()
        self.task = task
        dictionary = getattr(task, "target_dictionary", None)
        self.padding_idx = dictionary.pad() if dictionary is not None else -100

    @classmethod
    def add_args(cls, parser):
        add_registered_args(cls, parser, "criterion")

    @classmethod
    def build_criterion(cls, cfg, task):
        """Construct from `cfg` by __init__'s parameter names (fairseq's rule)."""
        init_args = {}
        for p in inspect.signature(cls).parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY):
                raise NotImplementedError(f"{cls.__name__}.__init__: {p.kind} parameter {p.name} not supported")
            if p.name == "task":
                init_args["task"] = task
            elif p.name == "cfg":
                init_args["cfg"] = cfg
            elif hasattr(cfg, p.name):
                init_args[p.name] = getattr(cfg, p.name)
            elif p.default is p.empty:
                raise ValueError(f"criterion {cls.__name__} needs {p.name!r}, which the config does not have")
        return cls(**init_args)

    def forward(self, model, sample, reduce=True):
        raise NotImplementedError

    @classmethod
    def reduce_metrics(cls, logging_outputs: List[Dict]) -> None:
        """Log the aggregated values through fairseq.logging.metrics (subclasses do). A criterion written for
        fairseq's older API defines a static aggregate_logging_outputs instead: its values are logged
        (but for the counts nsentences, ntokens and sample_size), as fairseq does."""
        aggregate = getattr(cls, "aggregate_logging_outputs", None)
        if aggregate is None:
            return
        for key, value in aggregate(logging_outputs).items():
            if key not in ("nsentences", "ntokens", "sample_size"):
                metrics.log_scalar(key, value)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return False


class LegacyFairseqCriterion(FairseqCriterion):
    """fairseq's base for criteria configured by an argparse Namespace: `__init__(self, args, task)` with
    flags from a static add_args (examples/roberta/wsc's criteria); `self.args` is the Namespace."""

    def __init__(self, args, task):
        super().__init__(task)
        self.args = args

    @classmethod
    def build_criterion(cls, args, task):
        return cls(args, task)


def register_criterion(name: str, dataclass=None):
    """Class decorator: `--criterion name` builds this class (a FairseqCriterion)."""
    return registry.REGISTRIES["criterion"].register(name, dataclass)


registry.REGISTRIES["criterion"].base_class = FairseqCriterion

