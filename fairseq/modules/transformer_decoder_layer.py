"""fairseq's TransformerDecoderLayer without encoder attention: the block of a decoder-only language model.

Time-major [T, B, C]. Causal self-attention (fairseq.modules.multihead_attention) then a feed-forward
block, each wrapped as x + dropout(f(x)) with a LayerNorm before f (normalize_before, what
transformer_lm always uses) or after the sum. Linear layers are Xavier-uniform with zero bias, as
fairseq initialises them.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from fairseq.modules.multihead_attention import MultiheadAttention

ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "gelu_accurate": lambda x: F.gelu(x, approximate="tanh"),
               "tanh": torch.tanh, "linear": lambda x: x}


def xavier_linear(in_features: int, out_features: int, bias: bool = True) -> nn.Linear:
    m = nn.Linear(in_features, out_features, bias)
    nn.init.xavier_uniform_(m.weight)
    if bias:
        nn.init.constant_(m.bias, 0.0)
    return m


class TransformerDecoderLayer(nn.Module):
    def __init__(self, embed_dim: int, ffn_dim: int, num_heads: int, dropout: float = 0.1,
                 attention_dropout: float = 0.0, activation_dropout: float = 0.0, activation_fn: str = "relu",
                 normalize_before: bool = True):
        super().__init__()
        if activation_fn not in ACTIVATIONS:
            raise ValueError(f"--activation-fn {activation_fn!r}: choose from {', '.join(ACTIVATIONS)}")
        self.embed_dim = embed_dim
        self.self_attn = MultiheadAttention(embed_dim, num_heads, dropout=attention_dropout, self_attention=True)
        self.self_attn_layer_norm = nn.LayerNorm(embed_dim)
        self.fc1 = xavier_linear(embed_dim, ffn_dim)
        self.fc2 = xavier_linear(ffn_dim, embed_dim)
        self.final_layer_norm = nn.LayerNorm(embed_dim)
        self.activation = ACTIVATIONS[activation_fn]
        self.dropout, self.activation_dropout = dropout, activation_dropout
        self.normalize_before = normalize_before

    def _block(self, x: torch.Tensor, norm: nn.LayerNorm, f) -> torch.Tensor:
        h = f(norm(x) if self.normalize_before else x)
        x = x + F.dropout(h, self.dropout, self.training)
        return x if self.normalize_before else norm(x)

    def forward(self, x: torch.Tensor, self_attn_mask: Optional[torch.Tensor] = None,
                self_attn_padding_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x [T, B, C]; self_attn_mask [T, T] additive (-inf above the diagonal); padding mask [B, T] True at pads."""
        x = self._block(x, self.self_attn_layer_norm, lambda h: self.self_attn(
            h, h, h, key_padding_mask=self_attn_padding_mask, attn_mask=self_attn_mask, need_weights=False)[0])

        def ffn(h):
            h = F.dropout(self.activation(self.fc1(h)), self.activation_dropout, self.training)
            return self.fc2(h)

        return self._block(x, self.final_layer_norm, ffn)
