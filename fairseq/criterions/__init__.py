"""Criteria by --criterion name (fairseq's register_criterion; default cross_entropy, as in fairseq).
The built-in criteria register themselves when their modules are imported below."""
from fairseq.criterions.fairseq_criterion import (  # noqa: F401
    CRITERION_DATACLASS_REGISTRY,
    CRITERION_REGISTRY,
    FairseqCriterion,
    LegacyFairseqCriterion,
    register_criterion,
)
from fairseq import registry
from fairseq.criterions import cross_entropy, masked_lm, sentence_prediction, sentence_ranking  # noqa: F401


def build_criterion(cfg, task):
    """The registered criterion for cfg.criterion, built by its __init__'s parameter names."""
    return registry.lookup("criterion", cfg.criterion).build_criterion(cfg, task)
