"""Models by --arch: fairseq's registries (register_model, register_model_architecture), base classes and
build_model. The built-in RoBERTa registers itself when fairseq.models.roberta is imported below."""
from __future__ import annotations

from fairseq.models.architectures import (  # noqa: F401  (the package's public names)
    ARCH_CONFIG_REGISTRY,
    ARCH_MODEL,
    ARCH_MODEL_NAME_REGISTRY,
    ARCH_MODEL_REGISTRY,
    ARCH_REGISTRY,
    MODEL_DATACLASS_REGISTRY,
    MODEL_REGISTRY,
    add_model_args,
    arch_choices,
    get_arch,
    model_class,
    register_model,
    register_model_architecture,
)
from fairseq.models.fairseq_encoder import FairseqEncoder  # noqa: F401
from fairseq.models.fairseq_model import BaseFairseqModel, FairseqEncoderModel  # noqa: F401
from fairseq.models import roberta, transformer_lm  # noqa: F401  (register their --arch names)


def build_model(args, task, from_checkpoint: bool = False):
    """The registered model of --arch, built by its class (fairseq's models.build_model). The
    architecture's defaults are filled where fairseq fills them: when the flags are parsed
    (options.parse_args_and_arch) and by the model's own build_model (RobertaModel.build_model)."""
    return model_class(getattr(args, "arch", None) or "roberta_base").build_model(args, task)
