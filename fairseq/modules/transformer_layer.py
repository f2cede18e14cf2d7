"""Post-LN transformer encoder layer (fairseq's TransformerEncoderLayer, normalize_before=False).

Activations are batch-first [B, T, C] everywhere inside our model: that avoids the transposes fairseq
does for its time-major layout (the public `inner_states` are still returned as [T, B, C]).

Three modes, chosen by `query_index`:
  * full:  queries, keys and values at all T positions (query_index=None);
  * cross: queries (and outputs) only at the gathered positions `query_index` [B, K], keys/values at all
           T positions with the full key padding mask (token dropping's layer d);
  * kept:  the caller has already gathered a [B, K, C] tensor and its padding mask; this is just "full"
           on a shorter sequence.

Attention dropout. On CPU, torch's dropout draws a 32-bit Mersenne-twister number per element through a
slow Bernoulli sampler; for attention probabilities ([B, H, T, T]) that was ~45 ms per 4M elements here,
i.e. about a fifth of a whole training step (SPEC section 5). `scaled_dot_product_attention` with
dropout_p > 0 also leaves the fused CPU kernel for the math path, which does the same. We keep the
exact semantics of inverted dropout (each probability independently zeroed with probability p, the rest
scaled by 1/(1-p)), but draw the randomness cheaply: one 64-bit random word from torch's generator is
split into four 16-bit uniforms, and an element is dropped when its uniform is below round(p * 2^16).
The realised drop probability is round(p*65536)/65536 (0.1000061 for p=0.1) and the keep scale uses that
exact value, so the expectation of every output is unchanged. This is ~3x cheaper than F.dropout and
still seeded by (and reproducible from) torch's global RNG state. The 1/(1-p) scale of attention
dropout is applied to the [B, H, T, D] attention output instead of the [B, H, T, T] probabilities.
Without attention dropout (eval, or attention_dropout=0) the fused SDPA kernel is used. Under
torch.compile (--compile) the same sampler is compiled (inductor draws the 64-bit words with its own
generator); torch's F.dropout compiled for CPU measured 1.5x slower per step than this sampler in eager.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from fairseq.modules import adaprune

_U16 = 1 << 16


def _uniform16(shape, device) -> torch.Tensor:
    """int16 tensor of independent uniforms over [-32768, 32767], four per 64-bit draw of torch's RNG."""
    n = math.prod(shape)
    words = torch.randint(-(1 << 63), (1 << 63) - 1, ((n + 3) // 4,), dtype=torch.int64, device=device)
    return words.view(torch.int16)[:n].view(shape)


def drop_threshold(p: float):
    """(int16 threshold, keep scale) for dropping with probability round(p * 2^16) / 2^16."""
    q = int(round(p * _U16))
    q = min(max(q, 0), _U16 - 1)
    return q - (_U16 // 2), 1.0 / (1.0 - q / _U16)


def drop_mask(shape, p: float, device, dtype: torch.dtype = torch.bool) -> tuple:
    """(keep mask, scale): each element kept independently with probability 1 - round(p*2^16)/2^16.

    With a floating `dtype` the mask is 0/1 in that dtype, written straight from the comparison (no
    separate bool tensor and cast): multiplying by a float mask is ~2x cheaper than torch.where here."""
    thr, scale = drop_threshold(p)
    u = _uniform16(shape, device)
    if dtype == torch.bool:
        return u >= thr, scale
    keep = torch.empty(shape, dtype=dtype, device=device)
    torch.ge(u, thr, out=keep)
    return keep, scale


def cheap_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout with the cheap 16-bit sampler above; identity when not training or p == 0."""
    if not training or p <= 0.0:
        return x
    if x.is_cuda:  # the GPU Philox dropout is already fast
        return F.dropout(x, p, True)
    keep, scale = drop_mask(x.shape, p, x.device, x.dtype)
    return (x * keep).mul_(scale)


def dropout_add(residual: torch.Tensor, x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """residual + cheap_dropout(x): on CPU one addcmul pass (residual + scale * x * keep) instead of three
    (x * keep, * scale, + residual); the same single rounding of each product, so the same numbers."""
    if not training or p <= 0.0 or x.is_cuda:
        return residual + cheap_dropout(x, p, training)
    keep, scale = drop_mask(x.shape, p, x.device, x.dtype)
    return torch.addcmul(residual, x, keep, value=scale)


class MultiheadSelfAttention(nn.Module):
    """fairseq's MultiheadAttention for self-attention: k/v/q/out projections (names and order as fairseq)."""

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        if embed_dim % num_heads != 0:
            raise ValueError(f"--encoder-embed-dim {embed_dim} is not divisible by "
                             f"--encoder-attention-heads {num_heads}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.dropout = dropout
        # registration order k, v, q, out matches fairseq's parameter order (optimizer-state compatible)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, query: torch.Tensor, kv: torch.Tensor, attn_mask: Optional[torch.Tensor]) -> torch.Tensor:
        """query [B,Tq,C], kv [B,Tk,C] (the same tensor for self-attention), attn_mask: bool [B,1,1,Tk]
        (True = may attend) or None. Returns [B,Tq,C]."""
        b, tq, c = query.shape
        if kv is query:
            # one GEMM for q, k and v: same maths, fewer passes over the input
            w = torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight], 0)
            bias = torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias], 0)
            q, k, v = F.linear(query, w, bias).split(c, dim=-1)
        else:
            w = torch.cat([self.k_proj.weight, self.v_proj.weight], 0)
            bias = torch.cat([self.k_proj.bias, self.v_proj.bias], 0)
            q = self.q_proj(query)
            k, v = F.linear(kv, w, bias).split(c, dim=-1)
        q, k, v = self._heads(q), self._heads(k), self._heads(v)
        p = self.dropout if self.training else 0.0
        if p > 0.0 and not q.is_cuda:
            out = self._attention_with_dropout(q, k, v, attn_mask, p)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p)
        out = out.transpose(1, 2).reshape(b, tq, c)
        return self.out_proj(out)

    def _attention_with_dropout(self, q, k, v, attn_mask, p: float) -> torch.Tensor:
        """softmax(q k^T / sqrt(D) + mask) with cheap inverted dropout, times v (see module docstring).

        The padding mask is added as a -inf bias in place (matmul's backward does not need its output),
        which is ~3x cheaper than masked_fill on the [B,H,T,T] scores and free in the backward."""
        scores = torch.matmul(q * (self.head_dim ** -0.5), k.transpose(-1, -2))
        if attn_mask is not None:
            bias = torch.zeros(attn_mask.shape, dtype=scores.dtype, device=scores.device)
            scores.add_(bias.masked_fill_(~attn_mask, float("-inf")))
        probs = torch.softmax(scores, dim=-1)
        keep, scale = drop_mask(probs.shape, p, probs.device, probs.dtype)
        return torch.matmul(probs * keep, v).mul_(scale)


class TransformerEncoderLayer(nn.Module):
    """Post-LN layer: x = LN(x + drop(attn(x))); x = LN(x + drop(fc2(act_drop(gelu(fc1(x))))))."""

    def __init__(self, embed_dim: int, ffn_dim: int, num_heads: int, dropout: float = 0.1,
                 attention_dropout: float = 0.1, activation_dropout: float = 0.0, layer_norm_eps: float = 1e-5):
        super().__init__()
        self.embed_dim = embed_dim
        self.self_attn = MultiheadSelfAttention(embed_dim, num_heads, attention_dropout)
        self.self_attn_layer_norm = nn.LayerNorm(embed_dim, eps=layer_norm_eps)
        self.dropout = dropout
        self.activation_dropout = activation_dropout
        self.fc1 = nn.Linear(embed_dim, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, embed_dim)
        self.final_layer_norm = nn.LayerNorm(embed_dim, eps=layer_norm_eps)

    def _get_fc_rank(self, remove_num: int):
        """AdaPrune: the remove_num feed-forward units with the smallest weights (fairseq.modules.adaprune)."""
        return adaprune.fc_rank(self.fc1, self.fc2, remove_num)

    def _prune_fc_layer(self, remove_index) -> None:
        """AdaPrune: drop those feed-forward units from fc1 and fc2."""
        self.fc1, self.fc2 = adaprune.prune_fc(self.fc1, self.fc2, remove_index)

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None,
                query_index: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x [B,T,C]; attn_mask bool [B,1,1,T] (True = real token) or None; query_index LongTensor [B,K]
        selects the positions whose queries/outputs are computed (cross mode). Returns [B,T,C] or [B,K,C]."""
        if query_index is not None:
            residual = x.gather(1, query_index.unsqueeze(-1).expand(-1, -1, x.size(-1)))
            h = self.self_attn(residual, x, attn_mask)
        else:
            residual = x
            h = self.self_attn(x, x, attn_mask)
        x = self.self_attn_layer_norm(dropout_add(residual, h, self.dropout, self.training))
        h = F.gelu(self.fc1(x))
        h = cheap_dropout(h, self.activation_dropout, self.training)
        return self.final_layer_norm(dropout_add(x, self.fc2(h), self.dropout, self.training))
