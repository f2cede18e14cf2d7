"""Models by --arch: the architecture table (fairseq.models.architectures) and build_model.

The model classes are reached through fairseq.registry, so this package imports no model and the
layers above it (options, tasks, checkpoints, the hub interface) import it freely."""
from __future__ import annotations

from typing import Dict

from fairseq import registry
from fairseq.models.fairseq_encoder import FairseqEncoder  # noqa: F401  (placeholder, see file)
from fairseq.models.architectures import (  # noqa: F401  (the package's public names)
    ARCH_MODEL,
    ARCH_REGISTRY,
    add_model_args,
    arch_choices,
    base_architecture,
    get_arch,
)

MODEL_REGISTRY: Dict[str, str] = registry.MODELS


def build_model(args, dictionary_or_task):
    """Fill the --arch defaults into args and build its model (through the registry) for a dictionary
    (or task)."""
    arch = getattr(args, "arch", None) or "roberta_base"
    get_arch(arch)(args)
    return registry.lookup("model", ARCH_MODEL[arch]).build_model(args, dictionary_or_task)
