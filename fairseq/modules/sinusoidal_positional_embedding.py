"""fairseq.modules.sinusoidal_positional_embedding.SinusoidalPositionalEmbedding: fixed sin/cos position vectors.

Position p (counted from padding_idx + 1 over the non-pad tokens of a row, as fairseq.utils.make_positions
does; pads get padding_idx, whose vector is zero) maps to [sin(p * w_0..w_{h-1}), cos(p * w_0..w_{h-1})]
with w_i = 10000^(-i / (h - 1)) and h = dim // 2 (tensor2tensor's variant of "Attention Is All You
Need", as fairseq); an odd dim gets a zero last column. The table grows on demand; TorchScript-able.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import Tensor, nn

from fairseq.utils import make_positions


class SinusoidalPositionalEmbedding(nn.Module):
    def __init__(self, embedding_dim: int, padding_idx: Optional[int], init_size: int = 1024):
        super().__init__()
        self.embedding_dim = embedding_dim
        self.padding_idx = padding_idx if padding_idx is not None else 0
        self.weights = SinusoidalPositionalEmbedding.get_embedding(init_size, embedding_dim, padding_idx)
        self.onnx_trace = False
        self.register_buffer("_float_tensor", torch.FloatTensor(1))  # follows the module's device and dtype
        self.max_positions = int(1e5)

    def prepare_for_onnx_export_(self) -> None:
        self.onnx_trace = True

    @staticmethod
    def get_embedding(num_embeddings: int, embedding_dim: int, padding_idx: Optional[int] = None) -> Tensor:
        half_dim = embedding_dim // 2
        step = math.log(10000) / (half_dim - 1)
        freqs = torch.exp(torch.arange(half_dim, dtype=torch.float) * -step)
        angles = torch.arange(num_embeddings, dtype=torch.float).unsqueeze(1) * freqs.unsqueeze(0)
        emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1).view(num_embeddings, -1)
        if embedding_dim % 2 == 1:
            emb = torch.cat([emb, torch.zeros(num_embeddings, 1)], dim=1)
        if padding_idx is not None:
            emb[padding_idx, :] = 0
        return emb

    def forward(self, input: Tensor, incremental_state: Optional[Any] = None, timestep: Optional[Tensor] = None,
                positions: Optional[Any] = None) -> Tensor:
        """input [B, T] token ids -> [B, T, dim] (while decoding one step: [B, 1, dim] for position T or timestep+1)."""
        bsz, seq_len = input.size(0), input.size(1)
        max_pos = self.padding_idx + 1 + seq_len
        if max_pos > self.weights.size(0):
            self.weights = SinusoidalPositionalEmbedding.get_embedding(max_pos, self.embedding_dim, self.padding_idx)
        self.weights = self.weights.to(self._float_tensor)
        if incremental_state is not None:
            pos = int(timestep.view(-1)[0]) + 1 if timestep is not None else seq_len
            return self.weights[self.padding_idx + pos, :].expand(bsz, 1, -1)
        ids = make_positions(input, self.padding_idx, onnx_trace=self.onnx_trace)
        return self.weights.index_select(0, ids.view(-1)).view(bsz, seq_len, -1).detach()
