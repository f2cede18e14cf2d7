"""RoBERTa (fairseq 0.12.2 layout and numerics) with an optional token-dropping encoder path.

Parameter names and shapes are fairseq's so its checkpoints load directly; see FAIRSEQ_SPEC sections 5
and 7. Activations are batch-first [B,T,C] internally; `inner_states` are returned time-major [T,B,C]
as fairseq does. Token dropping (Hou et al. 2022, SPEC section 2) is selected per forward call by passing
`token_drop_keep` (sorted kept positions [B,K], position 0 included); the split of layers is
`model.encoder.sentence_encoder.token_drop_layers` = (cross layer d, last kept layer), default
(L//2 - 1, L - 2). A kept set per layer, [n,B,K] (random-LTD), makes layers START..END (default 1..L-2)
each run on their own set alone.

Two training-speed/memory switches act per encoder layer (`TransformerSentenceEncoder.layer_call`):
`--checkpoint-activations` keeps only each layer's input and recomputes the layer in the backward
(fairseq.modules.checkpoint_activations, torch's non-reentrant checkpoint; it restores the CPU and CUDA RNG states before recomputing, so
dropout masks, ours included, are replayed exactly); `--compile` runs every layer through one
torch.compile'd function (fairseq/compile.py). Both leave parameters and state-dict keys untouched.
"""
from __future__ import annotations

import argparse
import logging
from collections import OrderedDict
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from fairseq.checkpoint import roberta_keys
from fairseq.compile import call_layer
from fairseq.models.architectures import (
    ROBERTA_SHAPES,
    add_model_args,
    base_architecture,
    get_arch,
    register_model,
    register_model_architecture,
    roberta_shape,
)
from fairseq.models.fairseq_model import FairseqEncoderModel
from fairseq.models.roberta.hub_interface import RobertaHubInterface
from fairseq.modules import adaprune
from fairseq.modules.checkpoint_activations import checkpointed
from fairseq.modules.transformer_layer import TransformerEncoderLayer, cheap_dropout
from fairseq.token_drop import drop_layer_split, gather_positions, merge_positions
from fairseq.utils import make_positions

logger = logging.getLogger(__name__)


def init_bert_params(module: nn.Module) -> None:
    """fairseq's init: Linear/Embedding weights N(0, 0.02), Linear biases 0, the padding row 0."""
    if isinstance(module, nn.Linear):
        module.weight.data.normal_(mean=0.0, std=0.02)
        if module.bias is not None:
            module.bias.data.zero_()
    elif isinstance(module, nn.Embedding):
        module.weight.data.normal_(mean=0.0, std=0.02)
        if module.padding_idx is not None:
            module.weight.data[module.padding_idx].zero_()


class TransformerSentenceEncoder(nn.Module):
    """Embeddings + post-LN layers (fairseq's TransformerEncoder as used by RoBERTa)."""

    def __init__(self, args, vocab_size: int, padding_idx: int):
        super().__init__()
        e = args.encoder_embed_dim
        self.padding_idx = padding_idx
        self.dropout = args.dropout
        self.layerdrop = float(getattr(args, "encoder_layerdrop", 0.0) or 0.0)
        self.max_positions = args.max_positions
        self.embed_tokens = nn.Embedding(vocab_size, e, padding_idx)
        self.embed_positions = nn.Embedding(args.max_positions + padding_idx + 1, e, padding_idx)
        self.layernorm_embedding = nn.LayerNorm(e, eps=args.layer_norm_eps)
        self.layers = nn.ModuleList([
            TransformerEncoderLayer(e, args.encoder_ffn_embed_dim, args.encoder_attention_heads,
                                    args.dropout, args.attention_dropout, args.activation_dropout,
                                    args.layer_norm_eps)
            for _ in range(args.encoder_layers)])
        tdl = getattr(args, "token_drop_layers", None)
        self.token_drop_layers = None if tdl in (None, "") else tdl
        if getattr(args, "offload_activations", False):
            raise ValueError("--offload-activations is not implemented; --checkpoint-activations alone "
                             "cuts activation memory to one tensor per layer")
        self.checkpoint_activations = bool(getattr(args, "checkpoint_activations", False))
        self.compiled_layer_fn = None   # set by fairseq.compile.compile_model (--compile)

    def layer_call(self, i: int, x, attn_mask, query_index=None):
        """Layer i on x, through the compiled function and/or activation checkpointing when enabled."""
        layer = self.layers[i]
        fn = self.compiled_layer_fn if self.training and self.compiled_layer_fn is not None else call_layer
        if self.checkpoint_activations and self.training and torch.is_grad_enabled():
            return checkpointed(fn, layer, x, attn_mask, query_index)
        return fn(layer, x, attn_mask, query_index)

    def embed(self, src_tokens: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        if src_tokens.size(1) > self.max_positions:
            raise ValueError(f"input length {src_tokens.size(1)} exceeds --max-positions {self.max_positions}")
        x = self.embed_tokens(src_tokens) + self.embed_positions(make_positions(src_tokens, self.padding_idx))
        x = cheap_dropout(self.layernorm_embedding(x), self.dropout, self.training)
        return x * (~pad).unsqueeze(-1).type_as(x)

    def forward(self, src_tokens: torch.Tensor, return_all_hiddens: bool = False,
                token_drop_keep: Optional[torch.Tensor] = None, cls_only: bool = False):
        """Returns (x [B,T,C], extra) with extra = {inner_states ([T,B,C] list or None), cls_local, cls_global}.

        cls_only: the full model only as far as `<s>` needs it (ScTD's full pass when its MLM loss is
        not trained on): every position up to layer L-2, `<s>` alone in the last layer; x is [B,1,C]."""
        if cls_only and (token_drop_keep is not None or return_all_hiddens):
            raise ValueError("cls_only runs the full model and returns no inner states")
        pad = src_tokens.eq(self.padding_idx)
        # no mask at all when nothing is padded (cheaper attention); the check would sync a GPU, so only on CPU
        attn_mask = None if (not pad.is_cuda and not bool(pad.any())) else (~pad)[:, None, None, :]
        x = self.embed(src_tokens, pad)
        states = [x] if return_all_hiddens else None
        L = len(self.layers)
        if cls_only:
            x, cls_local = self._run(x, attn_mask, range(L - 1), states)
            first = torch.zeros(x.size(0), 1, dtype=torch.long, device=x.device)
            x = x[:, :1] if self._layer_dropped() else self.layer_call(L - 1, x, attn_mask, first)
        elif token_drop_keep is None:
            x, cls_local = self._run(x, attn_mask, range(L), states)
        else:
            x, cls_local = self._run_dropping(x, attn_mask, pad, token_drop_keep, states)
        inner = [s.transpose(0, 1) for s in states] if states is not None else None
        return x, {"inner_states": inner, "cls_local": cls_local, "cls_global": x[:, 0]}

    def _layer_dropped(self) -> bool:
        """LayerDrop: skip the next layer for this batch (training only)."""
        return self.training and self.layerdrop > 0 and float(torch.rand(())) < self.layerdrop

    def _run(self, x, attn_mask, layer_ids, states, cls_local=None):
        L = len(self.layers)
        for i in layer_ids:
            if not self._layer_dropped():
                x = self.layer_call(i, x, attn_mask)
            if states is not None:
                states.append(x)
            if i == L - 2:
                cls_local = x[:, 0]
        return x, cls_local

    def _run_dropping(self, x, attn_mask, pad, keep, states):
        """Token dropping: full layers, cross layer d, kept layers d+1..end, merge, full layers after."""
        if keep.dim() == 3:
            return self._run_layerwise(x, attn_mask, pad, keep, states)
        L = len(self.layers)
        d, end = drop_layer_split(L, self.token_drop_layers)
        if keep.dim() != 2 or keep.size(0) != x.size(0):
            raise ValueError(f"token_drop_keep must be [B,K] with B={x.size(0)}, got {tuple(keep.shape)}")
        if not keep.is_cuda and keep.size(1) > 0 and bool((keep[:, 0] != 0).any()):
            raise ValueError("token_drop_keep must include position 0 (<s>) as its first entry in every row")
        x, cls_local = self._run(x, attn_mask, range(d), states)
        before = x                                    # output of layer d-1 (the embeddings when d == 0)
        kept_mask = None if attn_mask is None else (~gather_positions(pad, keep))[:, None, None, :]
        h = self.layer_call(d, x, attn_mask, keep)
        if d == L - 2:
            cls_local = h[:, 0]
        if states is not None:
            states.append(merge_positions(before, h, keep))
        for i in range(d + 1, end + 1):
            h = self.layer_call(i, h, kept_mask)
            if states is not None:
                states.append(merge_positions(before, h, keep))
            if i == L - 2:
                cls_local = h[:, 0]
        x = merge_positions(before, h, keep)
        return self._run(x, attn_mask, range(end + 1, L), states, cls_local)

    def _run_layerwise(self, x, attn_mask, pad, keep, states):
        """A kept set per layer (random-LTD): layer START+i runs on the positions keep[i] alone (their
        queries and keys); the other positions skip it and keep their state. keep: [n, B, K]."""
        L = len(self.layers)
        start, end = drop_layer_split(L, self.token_drop_layers, per_layer=True)
        if keep.size(0) != end - start + 1 or keep.size(1) != x.size(0):
            raise ValueError(f"token_drop_keep [n,B,K] needs n = {end - start + 1} dropping layers ({start}..{end}) "
                             f"and B = {x.size(0)}, got {tuple(keep.shape)}")
        x, cls_local = self._run(x, attn_mask, range(start), states)
        for i in range(start, end + 1):
            if not self._layer_dropped():
                k = keep[i - start]
                kept_mask = None if attn_mask is None else (~gather_positions(pad, k))[:, None, None, :]
                x = merge_positions(x, self.layer_call(i, gather_positions(x, k), kept_mask), k)
            if states is not None:
                states.append(x)
            if i == L - 2:
                cls_local = x[:, 0]
        return self._run(x, attn_mask, range(end + 1, L), states, cls_local)


class _PaddedRowsLinear(torch.autograd.Function):
    """x @ weight.T + bias, with the GEMM written into rows padded to a multiple of 16 floats.

    Why: on CPU, MKL's sgemm is ~1.6x slower when its output rows have an odd float stride, and
    vocabularies usually do (fairseq's dictionaries plus <mask>: 7713 in the fixture, RoBERTa's 50265).
    Measured on one thread (this repository's machine): [144,128] x [128,7713] 5.3 -> 3.2 ms;
    [307,768] x [768,50265] 450 -> 298 ms. The padded result is copied out to a contiguous tensor (so
    the caller's log_softmax sees the usual layout; the copy costs under a tenth of the saved time). The backward is
    plain linear's."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        v, c = weight.shape
        rows = x.reshape(-1, c)
        out = x.new_empty(rows.size(0), (v + 15) // 16 * 16)[:, :v]
        torch.addmm(bias, rows, weight.t(), out=out)
        return out.contiguous().view(*x.shape[:-1], v)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        g = grad.reshape(-1, weight.size(0))
        gx = g.mm(weight).view_as(x) if ctx.needs_input_grad[0] else None
        gw = g.t().mm(x.reshape(-1, weight.size(1))) if ctx.needs_input_grad[1] else None
        gb = g.sum(0) if ctx.needs_input_grad[2] else None
        return gx, gw, gb


def vocab_logits(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """The LM head's output projection; the padded-rows GEMM only where it was measured to pay
    (CPU, fp32, no autocast, a vocabulary that is not already a multiple of 16)."""
    if (x.device.type == "cpu" and x.dtype == weight.dtype == torch.float32 and weight.size(0) % 16
            and not torch.is_autocast_enabled("cpu")):
        return _PaddedRowsLinear.apply(x, weight, bias)
    return F.linear(x, weight) + bias


class RobertaLMHead(nn.Module):
    """dense -> gelu -> LayerNorm -> tied output projection + bias; only masked rows when asked."""

    def __init__(self, embed_dim: int, output_dim: int, weight: Optional[nn.Parameter] = None,
                 layer_norm_eps: float = 1e-5):
        super().__init__()
        self.dense = nn.Linear(embed_dim, embed_dim)
        self.layer_norm = nn.LayerNorm(embed_dim, eps=layer_norm_eps)
        if weight is None:
            weight = nn.Linear(embed_dim, output_dim, bias=False).weight
        self.weight = weight
        self.bias = nn.Parameter(torch.zeros(output_dim))

    def forward(self, features: torch.Tensor, masked_tokens: Optional[torch.Tensor] = None) -> torch.Tensor:
        if masked_tokens is not None:
            features = features[masked_tokens]
        x = self.layer_norm(F.gelu(self.dense(features)))
        return vocab_logits(x, self.weight, self.bias)


class RobertaClassificationHead(nn.Module):
    """Sentence head on <s>: dropout, dense, tanh, dropout, out_proj (torch default init, as fairseq)."""

    def __init__(self, input_dim: int, inner_dim: int, num_classes: int, pooler_dropout: float = 0.0,
                 spectral_norm: bool = False):
        super().__init__()
        self.dense = nn.Linear(input_dim, inner_dim)
        self.dropout = pooler_dropout
        self.out_proj = nn.Linear(inner_dim, num_classes)
        if spectral_norm:  # --spectral-norm-classification-head, as fairseq's head does
            self.out_proj = nn.utils.parametrizations.spectral_norm(self.out_proj)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = F.dropout(features[:, 0, :], self.dropout, self.training)
        x = torch.tanh(self.dense(x))
        return self.out_proj(F.dropout(x, self.dropout, self.training))


class RobertaEncoder(nn.Module):
    def __init__(self, args, vocab_size: int, padding_idx: int):
        super().__init__()
        self.sentence_encoder = TransformerSentenceEncoder(args, vocab_size, padding_idx)
        tied = None if getattr(args, "untie_weights_roberta", False) else self.sentence_encoder.embed_tokens.weight
        self.lm_head = RobertaLMHead(args.encoder_embed_dim, vocab_size, tied, args.layer_norm_eps)

    def forward(self, src_tokens, features_only=False, return_all_hiddens=False, masked_tokens=None,
                token_drop_keep=None, cls_only=False, **unused):
        x, extra = self.sentence_encoder(src_tokens, return_all_hiddens, token_drop_keep, cls_only)
        if not (features_only or cls_only):
            x = self.lm_head(x, masked_tokens)
        return x, extra


@register_model("roberta")
class RobertaModel(FairseqEncoderModel):
    """fairseq-compatible RoBERTa: `model.encoder` (sentence_encoder + lm_head) and classification heads."""

    def __init__(self, args, encoder: RobertaEncoder):
        super().__init__(encoder)
        self.args = args
        self.apply(init_bert_params)
        self.classification_heads = nn.ModuleDict()

    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        add_model_args(parser)

    @classmethod
    def build_model(cls, args, task) -> "RobertaModel":
        """args: argparse.Namespace with fairseq names; task: anything with .source_dictionary."""
        get_arch(getattr(args, "arch", None) or "roberta_base")(args)
        dictionary = getattr(task, "source_dictionary", task)
        return cls(args, RobertaEncoder(args, len(dictionary), dictionary.pad()))

    @classmethod
    def from_pretrained(cls, model_name_or_path, checkpoint_file="model.pt", data_name_or_path=".", **kwargs):
        """fairseq's hub entry point: a RobertaHubInterface for model_dir/checkpoint_file (hub_utils)."""
        # The one deliberate import cycle (docs/ARCHITECTURE.md): fairseq's API puts the loader, which
        # builds models through the registry this module fills, on the model class.
        from fairseq import hub_utils
        x = hub_utils.from_pretrained(model_name_or_path, checkpoint_file, data_name_or_path, **kwargs)
        return RobertaHubInterface(x["args"], x["task"], x["models"][0], x["bpe"])

    def max_positions(self) -> int:
        return self.encoder.sentence_encoder.max_positions

    def fairseq_state_dict(self, state=None) -> "OrderedDict[str, torch.Tensor]":
        """The state dict checkpoints store: fairseq 0.12's keys and order (fairseq_compatible_state_dict)
        of this model's weights, or of `state` (a dict with this model's keys, e.g. an EMA's float32 copy)."""
        return fairseq_compatible_state_dict(self, state)

    def forward(self, src_tokens, features_only=False, return_all_hiddens=False, classification_head_name=None,
                masked_tokens=None, token_drop_keep=None, cls_only=False, **unused):
        if classification_head_name is not None:
            features_only = True
        x, extra = self.encoder(src_tokens, features_only, return_all_hiddens, masked_tokens=masked_tokens,
                                token_drop_keep=token_drop_keep, cls_only=cls_only)
        if classification_head_name is not None:
            x = self.classification_heads[classification_head_name](x)
        return x, extra

    def get_normalized_probs(self, net_output, log_probs: bool, sample=None) -> torch.Tensor:
        logits = net_output[0].float()
        return F.log_softmax(logits, dim=-1) if log_probs else F.softmax(logits, dim=-1)

    def get_targets(self, sample, net_output):
        return sample["target"]

    def _get_adaptive_head_loss(self) -> torch.Tensor:
        """AdaPrune's attention-head L1 penalty, scaled by args.mha_reg_scale_factor (fairseq.modules.adaprune)."""
        return adaprune.head_l1_loss(self.encoder.sentence_encoder.layers, float(self.args.mha_reg_scale_factor))

    def _get_adaptive_ffn_loss(self) -> torch.Tensor:
        """AdaPrune's feed-forward L1 penalty, scaled by args.ffn_reg_scale_factor."""
        return adaprune.ffn_l1_loss(self.encoder.sentence_encoder.layers, float(self.args.ffn_reg_scale_factor))

    def register_classification_head(self, name: str, num_classes: Optional[int] = None,
                                     inner_dim: Optional[int] = None, **unused) -> None:
        e = self.args.encoder_embed_dim
        if name in self.classification_heads:
            head = self.classification_heads[name]
            if head.out_proj.out_features == num_classes and head.dense.out_features == (inner_dim or e):
                return
        self.classification_heads[name] = RobertaClassificationHead(
            e, inner_dim or e, num_classes, float(getattr(self.args, "pooler_dropout", 0.0) or 0.0),
            spectral_norm=bool(getattr(self.args, "spectral_norm_classification_head", False)))

    # ---- fairseq state dicts --------------------------------------------------------------------
    def load_state_dict(self, state_dict, strict: bool = True, **kwargs):
        """Accept our keys or fairseq 0.12's: drop the zero BetterTransformer copies and `version`,
        re-tie lm_head.weight, register classification heads found in the state dict, and keep the
        initialisation of registered heads it lacks (a plugin task's head on a pretrained masked LM)."""
        sd = roberta_keys.from_fairseq(state_dict)
        tied = self.encoder.lm_head.weight is self.encoder.sentence_encoder.embed_tokens.weight
        if tied:
            sd.setdefault("encoder.lm_head.weight", sd.get(roberta_keys.SE + "embed_tokens.weight"))
            if sd["encoder.lm_head.weight"] is None:
                del sd["encoder.lm_head.weight"]
        for k, v in list(sd.items()):
            for suffix in (".out_proj.weight", ".out_proj.parametrizations.weight.original"):  # plain, spectral norm
                if k.startswith("classification_heads.") and k.endswith(suffix):
                    name = k[len("classification_heads."):-len(suffix)]
                    inner = sd[f"classification_heads.{name}.dense.weight"].size(0)
                    self.register_classification_head(name, v.size(0), inner)
        for name, head in self.classification_heads.items():  # fairseq: a head the checkpoint lacks keeps its init
            for k, v in head.state_dict().items():
                if f"classification_heads.{name}.{k}" not in sd:
                    logger.info(f"Overwriting classification_heads.{name}.{k} (not in the checkpoint)")
                    sd[f"classification_heads.{name}.{k}"] = v
        return super().load_state_dict(sd, strict=strict, **kwargs)


def fairseq_compatible_state_dict(model: RobertaModel, ours=None) -> "OrderedDict[str, torch.Tensor]":
    """The model's state dict (or `ours`, a dict with the model's keys) in fairseq 0.12's keys and order
    (fairseq.checkpoint.roberta_keys), so that real fairseq loads it with strict=True."""
    return roberta_keys.to_fairseq(model.state_dict() if ours is None else ours)


register_model_architecture("roberta", "roberta")(base_architecture)
for _name, _shape in ROBERTA_SHAPES.items():
    register_model_architecture("roberta", _name)(roberta_shape(*_shape))
