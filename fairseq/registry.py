"""Name -> implementation tables for the public surface (--task, --criterion, --arch, ...).

Each table maps a fairseq name to "module:attribute". Entries are imported lazily so that a
module with an optional dependency never breaks the others, and so that the tables double as
documentation of everything that exists.
"""
from __future__ import annotations

import importlib
from typing import Any

TASKS = {
    "masked_lm": "fairseq.tasks.masked_lm:MaskedLMTask",
    "sentence_prediction": "fairseq.tasks.sentence_prediction:SentencePredictionTask",
}

CRITERIA = {
    "masked_lm": "fairseq.criterions.masked_lm:MaskedLmLoss",
    "cross_entropy": "fairseq.criterions.cross_entropy:CrossEntropyCriterion",
    "sentence_prediction": "fairseq.criterions.sentence_prediction:SentencePredictionCriterion",
}

MODELS = {  # --arch names map to these through fairseq.models.architectures.ARCH_MODEL
    "roberta": "fairseq.models.roberta.model:RobertaModel",
}

OPTIMIZERS = {
    "adam": "fairseq.optim.adam:FairseqAdam",
}

LR_SCHEDULERS = {
    "polynomial_decay": "fairseq.optim.lr_scheduler:PolynomialDecaySchedule",
    "inverse_sqrt": "fairseq.optim.lr_scheduler:InverseSquareRootSchedule",
    "fixed": "fairseq.optim.lr_scheduler:FixedSchedule",
}

_TABLES = {
    "task": TASKS,
    "criterion": CRITERIA,
    "model": MODELS,
    "optimizer": OPTIMIZERS,
    "lr-scheduler": LR_SCHEDULERS,
}


def lookup(kind: str, name: str) -> Any:
    """Return the class registered as `name` for flag `--kind`, with a clear error if unknown."""
    table = _TABLES[kind]
    if name not in table:
        raise ValueError(f"unknown --{kind} {name!r}; choose from: {', '.join(sorted(table))}")
    module_name, attr = table[name].split(":")
    return getattr(importlib.import_module(module_name), attr)


def choices(kind: str) -> list[str]:
    return sorted(_TABLES[kind])
