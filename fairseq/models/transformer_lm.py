"""fairseq's transformer_lm: a decoder-only Transformer language model (--task language_modeling).

Layout and state-dict names as fairseq 0.12.2's TransformerLanguageModel (model.decoder: embed_tokens,
embed_positions, layers.N.{self_attn, self_attn_layer_norm, fc1, fc2, final_layer_norm}, layer_norm,
output_projection): pre-norm layers under the named archs (fairseq forces decoder_normalize_before there;
`--arch transformer_lm` itself is post-norm unless --decoder-normalize-before, as in fairseq), token
embeddings scaled by sqrt(dim) unless --no-scale-embedding, sinusoidal positions unless
--decoder-learned-pos, causal self-attention. Archs: transformer_lm, transformer_lm_big and the
GPT shapes (transformer_lm_gpt, transformer_lm_gpt2_tiny/small/medium/big). Not here: adaptive
input/softmax, character embeddings, a decoder input/output width other than the embedding's.
The forward takes `masked_tokens` as RoBERTa's does (the cross_entropy criterion projects only the
positions that have a target).
"""
from __future__ import annotations

import argparse
import math
from collections import OrderedDict
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from fairseq.models.architectures import register_model, register_model_architecture
from fairseq.models.fairseq_model import BaseFairseqModel
from fairseq.modules.sinusoidal_positional_embedding import SinusoidalPositionalEmbedding
from fairseq.modules.transformer_decoder_layer import ACTIVATIONS, TransformerDecoderLayer
from fairseq.utils import make_positions

DEFAULT_MAX_TARGET_POSITIONS = 1024


def add_lm_args(parser: argparse.ArgumentParser) -> None:
    """transformer_lm's flags (fairseq names); unset ones stay absent so the --arch fills them."""
    g = parser.add_argument_group("model", argument_default=argparse.SUPPRESS)
    g.add_argument("--activation-fn", choices=sorted(ACTIVATIONS), help="activation function")
    g.add_argument("--dropout", type=float, metavar="D", help="dropout probability")
    g.add_argument("--attention-dropout", type=float, metavar="D", help="dropout on attention weights")
    g.add_argument("--activation-dropout", "--relu-dropout", type=float, metavar="D",
                   help="dropout after the FFN activation")
    g.add_argument("--decoder-embed-dim", type=int, metavar="N", help="decoder embedding dimension")
    g.add_argument("--decoder-ffn-embed-dim", type=int, metavar="N", help="decoder FFN dimension")
    g.add_argument("--decoder-layers", type=int, metavar="N", help="number of decoder layers")
    g.add_argument("--decoder-attention-heads", type=int, metavar="N", help="number of attention heads")
    g.add_argument("--decoder-normalize-before", action="store_true",
                   help="LayerNorm before each block (the named transformer_lm_* archs always are)")
    g.add_argument("--no-decoder-final-norm", action="store_true", help="no LayerNorm after the last layer")
    g.add_argument("--no-token-positional-embeddings", action="store_true", help="no position embeddings")
    g.add_argument("--share-decoder-input-output-embed", action="store_true",
                   help="tie the output projection to the token embeddings")
    g.add_argument("--decoder-learned-pos", action="store_true", help="learned (not sinusoidal) positions")
    g.add_argument("--layernorm-embedding", action="store_true", help="LayerNorm after the embeddings")
    g.add_argument("--no-scale-embedding", action="store_true", help="do not scale embeddings by sqrt(dim)")
    g.add_argument("--decoder-layerdrop", type=float, metavar="D", help="LayerDrop probability")


class TransformerDecoder(nn.Module):
    def __init__(self, args, dictionary):
        super().__init__()
        dim, pad = args.decoder_embed_dim, dictionary.pad()
        self.padding_idx = pad
        self.max_target_positions = args.max_target_positions
        self.embed_tokens = nn.Embedding(len(dictionary), dim, pad)
        nn.init.normal_(self.embed_tokens.weight, mean=0, std=dim ** -0.5)
        nn.init.constant_(self.embed_tokens.weight[pad], 0)
        self.embed_scale = 1.0 if args.no_scale_embedding else math.sqrt(dim)
        self.embed_positions = None
        if not args.no_token_positional_embeddings:
            if args.decoder_learned_pos:  # fairseq's LearnedPositionalEmbedding: ids from pad + 1
                self.embed_positions = nn.Embedding(args.max_target_positions + pad + 1, dim, pad)
                nn.init.normal_(self.embed_positions.weight, mean=0, std=dim ** -0.5)
                nn.init.constant_(self.embed_positions.weight[pad], 0)
            else:
                self.embed_positions = SinusoidalPositionalEmbedding(dim, pad, args.max_target_positions + pad + 1)
        self.layernorm_embedding = nn.LayerNorm(dim) if args.layernorm_embedding else None
        self.dropout, self.layerdrop = args.dropout, args.decoder_layerdrop
        self.layers = nn.ModuleList([
            TransformerDecoderLayer(dim, args.decoder_ffn_embed_dim, args.decoder_attention_heads, args.dropout,
                                    args.attention_dropout, args.activation_dropout, args.activation_fn,
                                    normalize_before=args.decoder_normalize_before)
            for _ in range(args.decoder_layers)])
        final_norm = args.decoder_normalize_before and not args.no_decoder_final_norm
        self.layer_norm = nn.LayerNorm(dim) if final_norm else None
        self.output_projection = nn.Linear(dim, len(dictionary), bias=False)
        if args.share_decoder_input_output_embed:
            self.output_projection.weight = self.embed_tokens.weight
        else:
            nn.init.normal_(self.output_projection.weight, mean=0, std=dim ** -0.5)

    def max_positions(self) -> int:
        return self.max_target_positions

    def extract_features(self, prev_output_tokens: torch.Tensor):
        """[B, T, C] features of the last layer (after the final norm) and the inner states [T, B, C]."""
        if prev_output_tokens.size(1) > self.max_target_positions:
            raise ValueError(f"input length {prev_output_tokens.size(1)} exceeds --max-target-positions "
                             f"{self.max_target_positions}")
        x = self.embed_scale * self.embed_tokens(prev_output_tokens)
        if isinstance(self.embed_positions, nn.Embedding):
            x = x + self.embed_positions(make_positions(prev_output_tokens, self.padding_idx))
        elif self.embed_positions is not None:
            x = x + self.embed_positions(prev_output_tokens)
        if self.layernorm_embedding is not None:
            x = self.layernorm_embedding(x)
        x = F.dropout(x, self.dropout, self.training).transpose(0, 1)
        pad = prev_output_tokens.eq(self.padding_idx)
        pad = pad if bool(pad.any()) else None
        t = x.size(0)
        future = torch.triu(torch.full((t, t), float("-inf"), device=x.device, dtype=x.dtype), 1)
        inner = [x]
        for layer in self.layers:
            if self.training and self.layerdrop > 0 and float(torch.rand(())) < self.layerdrop:
                continue
            x = layer(x, self_attn_mask=future, self_attn_padding_mask=pad)
            inner.append(x)
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        return x.transpose(0, 1), inner

    def forward(self, prev_output_tokens, features_only: bool = False, masked_tokens: Optional[torch.Tensor] = None,
                incremental_state=None, **unused):
        if incremental_state is not None:
            raise ValueError("transformer_lm: incremental decoding (generation) is not supported here")
        x, inner = self.extract_features(prev_output_tokens)
        if masked_tokens is not None:
            x = x[masked_tokens]
        return (x if features_only else self.output_projection(x)), {"attn": [None], "inner_states": inner}


@register_model("transformer_lm")
class TransformerLanguageModel(BaseFairseqModel):
    supported_targets = {"future"}

    def __init__(self, args, decoder: TransformerDecoder):
        super().__init__()
        self.args = args
        self.decoder = decoder

    @classmethod
    def add_args(cls, parser) -> None:
        add_lm_args(parser)

    @classmethod
    def build_model(cls, args, task) -> "TransformerLanguageModel":
        if getattr(args, "max_target_positions", None) is None:
            args.max_target_positions = getattr(args, "tokens_per_sample", DEFAULT_MAX_TARGET_POSITIONS)
        return cls(args, TransformerDecoder(args, task.target_dictionary))

    def forward(self, src_tokens, src_lengths=None, **kwargs):
        return self.decoder(src_tokens, **kwargs)

    def max_positions(self) -> int:
        return self.decoder.max_positions()

    def fairseq_state_dict(self, state=None):
        """The state dict checkpoints store: this model's keys (fairseq's) plus fairseq's `decoder.version`
        (without it fairseq takes the file for a pre-2019 one and drops the final LayerNorm)."""
        out = OrderedDict(self.state_dict() if state is None else state)
        out["decoder.version"] = torch.tensor([3.0])
        return out

    def load_state_dict(self, state_dict, strict: bool = True, **kwargs):
        """Ours or fairseq's keys (its `decoder.version` marker is not a weight here)."""
        state = OrderedDict((k, v) for k, v in state_dict.items() if k != "decoder.version")
        return super().load_state_dict(state, strict=strict, **kwargs)


def _fill(args, name: str, value) -> None:
    if getattr(args, name, None) is None:
        setattr(args, name, value)


_DEFAULTS = (("dropout", 0.1), ("attention_dropout", 0.0), ("activation_dropout", 0.0), ("decoder_embed_dim", 512),
             ("decoder_ffn_embed_dim", 2048), ("decoder_layers", 6), ("decoder_attention_heads", 8),
             ("activation_fn", "relu"), ("decoder_layerdrop", 0.0), ("decoder_learned_pos", False),
             ("no_token_positional_embeddings", False), ("share_decoder_input_output_embed", False),
             ("no_decoder_final_norm", False), ("no_scale_embedding", False), ("layernorm_embedding", False))


def _check_shape(args) -> None:
    if args.decoder_embed_dim % args.decoder_attention_heads:
        raise ValueError(f"--decoder-embed-dim {args.decoder_embed_dim} is not divisible by "
                         f"--decoder-attention-heads {args.decoder_attention_heads}")


@register_model_architecture("transformer_lm", "transformer_lm")
def transformer_lm_architecture(args):
    """`--arch transformer_lm` is fairseq's model config as it stands: post-norm layers unless
    --decoder-normalize-before, and 512-wide input/output embeddings whatever --decoder-embed-dim says
    (fairseq then adds projections, which are not here: any other width is refused)."""
    for name, value in _DEFAULTS + (("decoder_normalize_before", False),):
        _fill(args, name, value)
    if args.decoder_embed_dim != 512:
        raise ValueError(f"--arch transformer_lm with --decoder-embed-dim {args.decoder_embed_dim}: fairseq keeps "
                         "512-wide input/output embeddings and projects them, which is not supported here; use "
                         "--decoder-embed-dim 512 or a transformer_lm_gpt* arch (their embeddings follow the width)")
    _check_shape(args)
    return args


def base_lm_architecture(args):
    """fairseq's base_lm_architecture, under every named transformer_lm_* arch: 6 x 512, FFN 2048, 8 heads,
    relu, dropout 0.1, sinusoidal positions, and always pre-norm ("training is not stable without this")."""
    for name, value in _DEFAULTS:
        _fill(args, name, value)
    args.decoder_normalize_before = True
    _check_shape(args)
    return args


def _lm_shape(layers: int, dim: int, ffn: int, heads: int, gpt: bool = True):
    def arch(args):
        for name, value in (("decoder_layers", layers), ("decoder_embed_dim", dim), ("decoder_ffn_embed_dim", ffn),
                            ("decoder_attention_heads", heads)):
            _fill(args, name, value)
        if gpt:  # the GPT shapes: gelu, attention dropout 0.1
            _fill(args, "attention_dropout", 0.1)
            _fill(args, "activation_fn", "gelu")
        return base_lm_architecture(args)
    return arch


for _name, _shape in {"transformer_lm_big": (12, 1024, 4096, 16, False), "transformer_lm_gpt": (12, 768, 3072, 12),
                      "transformer_lm_gpt2_tiny": (2, 64, 64, 1), "transformer_lm_gpt2_small": (24, 1024, 4096, 16),
                      "transformer_lm_gpt2_medium": (36, 1280, 5120, 20),
                      "transformer_lm_gpt2_big": (48, 1600, 6400, 25)}.items():
    register_model_architecture("transformer_lm", _name)(_lm_shape(*_shape))
