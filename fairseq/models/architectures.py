"""The --arch table: an architecture is a function(args) that fills in defaults with fairseq's rule.

A value already set on `args` (an explicit flag: any non-None attribute) beats the architecture's
default. `--max-positions` defaults to `--tokens-per-sample` when that is known (as fairseq's masked_lm
does), else 512. Also the model flags themselves (add_model_args). Nothing here imports a model, so
the model modules can import it.
"""
from __future__ import annotations

import argparse
from typing import Callable, Dict


def _fill(args, name: str, value) -> None:
    if getattr(args, name, None) is None:
        setattr(args, name, value)


def _roberta_shape(layers: int, embed: int, ffn: int, heads: int) -> Callable:
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
    _fill(args, "layer_norm_eps", 1e-5)
    tps = getattr(args, "tokens_per_sample", None)
    _fill(args, "max_positions", int(tps) if tps is not None else 512)
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


ARCH_REGISTRY: Dict[str, Callable] = {
    "roberta": base_architecture,
    "roberta_base": _roberta_shape(12, 768, 3072, 12),
    "roberta_large": _roberta_shape(24, 1024, 4096, 16),
    # small CPU-friendly shapes (ours; fairseq has no such names)
    "roberta_medium": _roberta_shape(8, 512, 2048, 8),
    "roberta_small": _roberta_shape(4, 512, 2048, 8),
    "roberta_tiny": _roberta_shape(2, 128, 512, 2),
}
ARCH_MODEL = {name: "roberta" for name in ARCH_REGISTRY}


def get_arch(name: str) -> Callable:
    if name not in ARCH_REGISTRY:
        raise ValueError(f"unknown --arch {name!r}; choose from: {', '.join(sorted(ARCH_REGISTRY))}")
    return ARCH_REGISTRY[name]


def arch_choices():
    return sorted(ARCH_REGISTRY)


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """RoBERTa model flags (fairseq names), all default None so the --arch fills them."""
    g = parser.add_argument_group("model")
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
    g.add_argument("--untie-weights-roberta", action="store_true", default=None,
                   help="untie the LM head weights from the token embeddings")
    g.add_argument("--activation-fn", default=None, help="only 'gelu' is supported")
    g.add_argument("--pooler-activation-fn", default=None, help="only 'tanh' is supported")
    g.add_argument("--checkpoint-activations", action="store_true", default=False,
                   help="recompute each encoder layer in the backward instead of storing its activations")
    g.add_argument("--offload-activations", action="store_true", default=False,
                   help="not implemented (an error): use --checkpoint-activations")
    g.add_argument("--spectral-norm-classification-head", action="store_true", default=False,
                   help="spectral norm on the classification head's out_proj (as fairseq)")
