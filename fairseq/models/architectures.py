"""The model and --arch tables (fairseq's register_model / register_model_architecture) and RoBERTa's
architecture defaults.

An architecture is a function(args) that fills in defaults with fairseq's rule: a value already set on
`args` (an explicit flag: any non-None attribute) beats the architecture's default. Model flags are
parsed with argparse.SUPPRESS as their default (as fairseq does), so an unset flag is absent from args
and a plugin's `args.x = getattr(args, "x", default)` sees its own default. `--max-positions` defaults to `--tokens-per-sample` when that is known (as fairseq's masked_lm
does), else 512. Also the model flags themselves (add_model_args). Nothing here imports a model, so
the model modules can import it; RoBERTa's names are registered by fairseq/models/roberta/model.py.
"""
from __future__ import annotations

import argparse
from typing import Callable, Dict

from fairseq import registry
from fairseq.flag_rules import ROBERTA_MAX_POSITIONS, check_sample_length

MODEL_REGISTRY: Dict[str, type] = registry.setup_registry("model").classes
MODEL_DATACLASS_REGISTRY = registry.REGISTRIES["model"].dataclasses
ARCH_MODEL_REGISTRY = registry.ARCH_MODEL_REGISTRY
ARCH_MODEL_NAME_REGISTRY = registry.ARCH_MODEL_NAME_REGISTRY
ARCH_CONFIG_REGISTRY = registry.ARCH_CONFIG_REGISTRY
ARCH_REGISTRY = ARCH_CONFIG_REGISTRY  # our earlier name for the same table
ARCH_MODEL = ARCH_MODEL_NAME_REGISTRY
get_arch, arch_choices, model_class = registry.get_arch, registry.arch_choices, registry.model_class


def register_model(name: str, dataclass=None) -> Callable:
    """Class decorator: `--arch` names registered on `name` build this model (fairseq's register_model)."""
    return registry.REGISTRIES["model"].register(name, dataclass)


def register_model_architecture(model_name: str, arch_name: str) -> Callable:
    """Function decorator: `--arch arch_name` builds model `model_name` after fn(args) fills defaults."""
    def decorate(fn):
        return registry.register_architecture(model_name, arch_name, fn)
    return decorate


def _fill(args, name: str, value) -> None:
    if getattr(args, name, None) is None:
        setattr(args, name, value)


def roberta_shape(layers: int, embed: int, ffn: int, heads: int) -> Callable:
    def arch(args):
        _fill(args, "encoder_layers", layers)
        _fill(args, "encoder_embed_dim", embed)
        _fill(args, "encoder_ffn_embed_dim", ffn)
        _fill(args, "encoder_attention_heads", heads)
        return base_architecture(args)
    return arch


def base_architecture(args):
    """Shared RoBERTa defaults (FAIRSEQ_SPEC section 5)."""
    _fill(args, "encoder_layers", 12)
    _fill(args, "encoder_embed_dim", 768)
    _fill(args, "encoder_ffn_embed_dim", 3072)
    _fill(args, "encoder_attention_heads", 12)
    _fill(args, "dropout", 0.1)
    _fill(args, "attention_dropout", 0.1)
    _fill(args, "activation_dropout", 0.0)
    _fill(args, "pooler_dropout", 0.0)
    _fill(args, "encoder_layerdrop", 0.0)
    _fill(args, "untie_weights_roberta", False)
    _fill(args, "activation_fn", "gelu")
    _fill(args, "pooler_activation_fn", "tanh")
    _fill(args, "encoder_normalize_before", False)
    _fill(args, "layernorm_embedding", True)
    _fill(args, "no_scale_embedding", True)
    _fill(args, "encoder_learned_pos", True)
    _fill(args, "checkpoint_activations", False)
    _fill(args, "offload_activations", False)
    _fill(args, "spectral_norm_classification_head", False)
    _fill(args, "layer_norm_eps", 1e-5)
    check_sample_length(args)
    tps = getattr(args, "tokens_per_sample", None)
    _fill(args, "max_positions", int(tps) if tps is not None else ROBERTA_MAX_POSITIONS)
    _fill(args, "max_source_positions", args.max_positions)
    _check(args)
    return args


def _check(args) -> None:
    if args.activation_fn != "gelu" or args.encoder_normalize_before or not args.layernorm_embedding:
        raise ValueError("only RoBERTa's layout is supported: gelu activation, post-LN layers, layernorm_embedding")
    if args.pooler_activation_fn != "tanh":
        raise ValueError(f"--pooler-activation-fn {args.pooler_activation_fn!r}: only 'tanh' is supported")
    for name in ("encoder_layers", "encoder_embed_dim", "encoder_ffn_embed_dim", "encoder_attention_heads",
                 "max_positions"):
        if int(getattr(args, name)) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if not float(args.layer_norm_eps) > 0:
        raise ValueError(f"--layer-norm-eps must be positive, got {args.layer_norm_eps}")


# RoBERTa's shapes (the last three are ours, small and CPU-friendly; fairseq has no such names)
ROBERTA_SHAPES = {
    "roberta_base": (12, 768, 3072, 12),
    "roberta_large": (24, 1024, 4096, 16),
    "roberta_medium": (8, 512, 2048, 8),
    "roberta_small": (4, 512, 2048, 8),
    "roberta_tiny": (2, 128, 512, 2),
}








def add_model_args(parser: argparse.ArgumentParser) -> None:
    """RoBERTa model flags (fairseq names). Unset flags stay absent from args (argparse.SUPPRESS, as in
    fairseq's model-specific group), so the --arch fills them."""
    g = parser.add_argument_group("model", argument_default=argparse.SUPPRESS)
    g.add_argument("--encoder-layers", type=int, metavar="L", help="number of encoder layers")
    g.add_argument("--encoder-embed-dim", type=int, metavar="H", help="encoder embedding dimension")
    g.add_argument("--encoder-ffn-embed-dim", type=int, metavar="F", help="encoder FFN dimension")
    g.add_argument("--encoder-attention-heads", type=int, metavar="A", help="number of attention heads")
    g.add_argument("--max-positions", type=int, help="number of positional embeddings to learn")
    g.add_argument("--layer-norm-eps", type=float, metavar="EPS",
                   help="epsilon of every LayerNorm (default 1e-5, fairseq's; HF RobertaConfig's default is "
                        "1e-12, kept by fairseq-import-hf)")
    g.add_argument("--dropout", type=float, metavar="D", help="dropout probability")
    g.add_argument("--attention-dropout", type=float, metavar="D", help="dropout on attention weights")
    g.add_argument("--activation-dropout", "--relu-dropout", type=float, metavar="D",
                   help="dropout after the FFN activation")
    g.add_argument("--pooler-dropout", type=float, metavar="D", help="dropout in the classification heads")
    g.add_argument("--encoder-layerdrop", type=float, metavar="D", help="LayerDrop probability")
    g.add_argument("--untie-weights-roberta", action="store_true",
                   help="untie the LM head weights from the token embeddings")
    g.add_argument("--activation-fn", help="only 'gelu' is supported")
    g.add_argument("--pooler-activation-fn", help="only 'tanh' is supported")
    g.add_argument("--checkpoint-activations", action="store_true",
                   help="recompute each encoder layer in the backward instead of storing its activations")
    g.add_argument("--offload-activations", action="store_true",
                   help="not implemented (an error): use --checkpoint-activations")
    g.add_argument("--spectral-norm-classification-head", action="store_true",
                   help="spectral norm on the classification head's out_proj (as fairseq)")
