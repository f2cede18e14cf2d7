"""AdaPrune (fairseq 0.12.2's hooks for pruning a fine-tuned RoBERTa, https://openreview.net/forum?id=_CMSV7FTzGI):
L1 penalties that push whole attention heads and feed-forward units towards zero while fine-tuning, and
the ranking/removal of the feed-forward units that ended up smallest. (Head ranking and removal are
MultiheadAttention's _get_reserve_head_index / _adaptive_prune_heads.)

RobertaModel._get_adaptive_head_loss / _get_adaptive_ffn_loss and TransformerEncoderLayer._get_fc_rank /
_prune_fc_layer call these; sentence_prediction adds the penalties when model.args sets
mha_reg_scale_factor / ffn_reg_scale_factor (Python attributes, as in fairseq: not command-line flags).
"""
from __future__ import annotations

from typing import Iterable, List

import torch
from torch import nn


def head_l1_loss(layers: Iterable[nn.Module], scale: float) -> torch.Tensor:
    """scale * the summed |weight| + |bias| of every layer's q, k and v projections (summed over its heads)."""
    total = 0.0
    for layer in layers:
        attn = layer.self_attn
        for proj in (attn.q_proj, attn.k_proj, attn.v_proj):
            total = total + scale * (proj.weight.abs().sum() + proj.bias.abs().sum())
    return total


def ffn_l1_loss(layers: Iterable[nn.Module], scale: float) -> torch.Tensor:
    """The summed |scale * w| of every layer's fc1 and fc2 weights and biases."""
    total = 0.0
    for layer in layers:
        for p in (layer.fc1.weight, layer.fc2.weight, layer.fc1.bias, layer.fc2.bias):
            total = total + (p * scale).abs().sum()
    return total


def fc_rank(fc1: nn.Linear, fc2: nn.Linear, remove_num: int) -> List[int]:
    """The remove_num feed-forward units with the smallest |fc1 row| + |fc2 column| + |fc1 bias| (ties: lower index)."""
    scores = fc1.weight.abs().sum(1) + fc2.weight.abs().sum(0) + fc1.bias.abs()
    return sorted(range(fc1.out_features), key=lambda i: float(scores[i]))[:remove_num]


def prune_fc(fc1: nn.Linear, fc2: nn.Linear, remove_index: List[int]):
    """(new fc1, new fc2) without the given units, as fresh trainable parameters (fc2's bias kept)."""
    removed = set(int(i) for i in remove_index)
    keep = torch.tensor([i for i in range(fc1.out_features) if i not in removed], dtype=torch.long)
    new1 = nn.Linear(fc1.in_features, len(keep)).to(fc1.weight)
    new2 = nn.Linear(len(keep), fc2.out_features).to(fc2.weight)
    new1.weight = nn.Parameter(fc1.weight.detach()[keep].clone())
    new1.bias = nn.Parameter(fc1.bias.detach()[keep].clone())
    new2.weight = nn.Parameter(fc2.weight.detach()[:, keep].clone())
    new2.bias = nn.Parameter(fc2.bias.detach().clone())
    return new1, new2
