"""fairseq.modules.multihead_attention.MultiheadAttention: fairseq's general attention module (time-major).

The public module plugins and scripts build on: inputs are [T, B, C]; self-, encoder-decoder or plain
attention with separate k/v/q/out projections (fairseq's parameter names, so state dicts move between
them); key padding masks (nonzero = padding, [B, S]); attention masks ([T, S], float = added to the
scores, bool/uint8 = True is masked); learned bias_k/bias_v and add_zero_attn, which each add one key
position; attention weights averaged over heads (or per head); incremental decoding state (cached keys
and values per module); adaptive head pruning (AdaPrune); and it compiles with torch.jit.script.
RoBERTa's encoder layers here use the batch-first, fused attention of fairseq.modules.transformer_layer
instead (the same parameters; that path is what training speed is measured on).
Not here: quantization noise (q_noise > 0) and xFormers attention, which raise a ValueError.
"""
from __future__ import annotations

import math
import uuid
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _mask_for_xformers(mask: Tensor, to_dtype: Optional[torch.dtype] = None) -> Tensor:
    """Convert between mask conventions: float masks are additive (-inf = masked); uint8/bool masks given
    here mean True = masked and come back with True = keep (xFormers' bool convention)."""
    float_types = [torch.float, torch.float16]
    to_dtype = mask.dtype if to_dtype is None else to_dtype
    if mask.dtype in float_types:
        if to_dtype in float_types:
            return mask.to(to_dtype)
        mask = mask < 0
    if to_dtype in float_types:
        return torch.zeros_like(mask, dtype=to_dtype).masked_fill_(mask.to(torch.bool), -float("inf"))
    return (~mask.to(torch.bool)).to(to_dtype)


class MultiheadAttention(nn.Module):
    def __init__(self, embed_dim: int, num_heads: int, kdim: Optional[int] = None, vdim: Optional[int] = None,
                 dropout: float = 0.0, bias: bool = True, add_bias_kv: bool = False, add_zero_attn: bool = False,
                 self_attention: bool = False, encoder_decoder_attention: bool = False, q_noise: float = 0.0,
                 qn_block_size: int = 8, xformers_att_config: Optional[str] = None,
                 xformers_blocksparse_layout: Optional[Tensor] = None,
                 xformers_blocksparse_blocksize: Optional[int] = 16):
        super().__init__()
        if xformers_att_config is not None:
            raise ValueError("MultiheadAttention: xformers_att_config (xFormers attention) is not supported")
        if q_noise > 0:
            raise ValueError("MultiheadAttention: q_noise (quantization noise) is not supported")
        if embed_dim % num_heads != 0:
            raise ValueError(f"MultiheadAttention: embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim = embed_dim
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self.qkv_same_dim = self.kdim == embed_dim and self.vdim == embed_dim
        if self_attention and not self.qkv_same_dim:
            raise ValueError("MultiheadAttention: self-attention needs query, key and value of one size")
        self.num_heads = num_heads
        self.dropout = dropout
        self.head_dim = embed_dim // num_heads
        self.scaling = self.head_dim ** -0.5
        self.self_attention = self_attention
        self.encoder_decoder_attention = encoder_decoder_attention
        self.k_proj = nn.Linear(self.kdim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(self.vdim, embed_dim, bias=bias)
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        if add_bias_kv:
            self.bias_k = nn.Parameter(torch.empty(1, 1, embed_dim))
            self.bias_v = nn.Parameter(torch.empty(1, 1, embed_dim))
        else:
            self.bias_k = self.bias_v = None
        self.add_zero_attn = add_zero_attn
        self.beam_size = 1
        self.onnx_trace = False
        self.skip_embed_dim_check = False
        self._incremental_state_id = str(uuid.uuid4())
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """fairseq's init: Xavier-uniform projections (gain 1/sqrt(2) for q/k/v of one size), zero out_proj bias,
        Xavier-normal bias_k/bias_v."""
        gain = 1 / math.sqrt(2) if self.qkv_same_dim else 1.0
        for proj in (self.k_proj, self.v_proj, self.q_proj):
            nn.init.xavier_uniform_(proj.weight, gain=gain)
        nn.init.xavier_uniform_(self.out_proj.weight)
        if self.out_proj.bias is not None:
            nn.init.constant_(self.out_proj.bias, 0.0)
        for extra in (self.bias_k, self.bias_v):
            if extra is not None:
                nn.init.xavier_normal_(extra)

    def prepare_for_onnx_export_(self) -> None:
        self.onnx_trace = True

    def set_beam_size(self, beam_size: int) -> None:
        self.beam_size = beam_size

    # ---- AdaPrune: keep the heads whose q/k/v projections have the largest L1 norm -----------------------
    def _get_reserve_head_index(self, num_heads_to_keep: int) -> List[Tuple[int, int]]:
        """(start, end) rows of the num_heads_to_keep heads with the largest summed |weight| + |bias| over q, k, v."""
        def norm(proj, h):
            rows = slice(h * self.head_dim, (h + 1) * self.head_dim)
            return float(proj.weight.detach()[rows].abs().sum() + proj.bias.detach()[rows].abs().sum())
        scores = [sum(norm(p, h) for p in (self.k_proj, self.q_proj, self.v_proj)) for h in range(self.num_heads)]
        order = sorted(range(self.num_heads), key=lambda h: scores[h], reverse=True)[:num_heads_to_keep]
        return [(h * self.head_dim, (h + 1) * self.head_dim) for h in order]

    def _adaptive_prune_heads(self, reserve_head_index: List[Tuple[int, int]]) -> None:
        """Keep only the given heads' rows of q/k/v (and out_proj's columns), as new trainable parameters."""
        rows = torch.cat([torch.arange(s, e) for s, e in reserve_head_index])
        for proj in (self.q_proj, self.k_proj, self.v_proj):
            proj.weight = nn.Parameter(proj.weight.detach()[rows].clone())
            proj.bias = nn.Parameter(proj.bias.detach()[rows].clone())
        self.out_proj.weight = nn.Parameter(self.out_proj.weight.detach()[:, rows].clone())
        self.num_heads = len(reserve_head_index)
        self.embed_dim = self.head_dim * self.num_heads
        for proj in (self.q_proj, self.k_proj, self.v_proj):
            proj.out_features = self.embed_dim

    def _set_skip_embed_dim_check(self) -> None:
        """After pruning the inner width no longer equals the input's: stop checking it."""
        self.skip_embed_dim_check = True

    # ---- the extra key positions of bias_k/bias_v and add_zero_attn -----------------------------------
    def _pad_masks(self, key_padding_mask: Optional[Tensor],
                   attn_mask: Optional[Tensor]) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        """Both masks one key position longer, the new position not masked."""
        if attn_mask is not None:
            attn_mask = torch.cat([attn_mask, attn_mask.new_zeros(attn_mask.size()[:-1] + torch.Size([1]))], dim=-1)
        if key_padding_mask is not None:
            key_padding_mask = torch.cat(
                [key_padding_mask, key_padding_mask.new_zeros(key_padding_mask.size()[:-1] + torch.Size([1]))], dim=-1)
        return key_padding_mask, attn_mask

    def _add_bias(self, k: Tensor, v: Tensor, key_padding_mask: Optional[Tensor], attn_mask: Optional[Tensor],
                  bsz: int) -> Tuple[Tensor, Tensor, Optional[Tensor], Optional[Tensor]]:
        """Append the learned bias_k/bias_v as one more key/value position (k, v: [S, B, C])."""
        assert self.bias_k is not None and self.bias_v is not None
        k = torch.cat([k, self.bias_k.repeat(1, bsz, 1)])
        v = torch.cat([v, self.bias_v.repeat(1, bsz, 1)])
        key_padding_mask, attn_mask = self._pad_masks(key_padding_mask, attn_mask)
        return k, v, key_padding_mask, attn_mask

    def _append_zero_attn(self, k: Tensor, v: Tensor, key_padding_mask: Optional[Tensor],
                          attn_mask: Optional[Tensor]) -> Tuple[Tensor, Tensor, Optional[Tensor], Optional[Tensor]]:
        """Append an all-zero key/value position (k, v: [B*H, S, D])."""
        zeros = k.size()[:-2] + torch.Size([1]) + k.size()[-1:]
        k = torch.cat([k, torch.zeros(zeros, dtype=k.dtype, device=k.device)], dim=-2)
        v = torch.cat([v, torch.zeros(zeros, dtype=v.dtype, device=v.device)], dim=-2)
        key_padding_mask, attn_mask = self._pad_masks(key_padding_mask, attn_mask)
        return k, v, key_padding_mask, attn_mask

    # ---- attention ----------------------------------------------------------------------------------
    def forward(self, query: Tensor, key: Optional[Tensor], value: Optional[Tensor],
                key_padding_mask: Optional[Tensor] = None,
                incremental_state: Optional[Dict[str, Dict[str, Optional[Tensor]]]] = None,
                need_weights: bool = True, static_kv: bool = False, attn_mask: Optional[Tensor] = None,
                before_softmax: bool = False, need_head_weights: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
        """query [T, B, C], key/value [S, B, C] -> ([T, B, C], weights [B, T, S] averaged over heads, or
        [H, B, T, S] with need_head_weights; None unless asked). before_softmax returns (scores, v)."""
        if need_head_weights:
            need_weights = True
        tgt_len, bsz, embed_dim = query.size()
        if not self.skip_embed_dim_check:
            assert embed_dim == self.embed_dim, f"query dim {embed_dim} != {self.embed_dim}"
        saved_state: Optional[Dict[str, Optional[Tensor]]] = None
        if incremental_state is not None:
            saved_state = self._get_input_buffer(incremental_state)
            if "prev_key" in saved_state and static_kv:  # encoder states already projected and cached
                key = value = None
        q = self.q_proj(query)
        k: Optional[Tensor] = None
        v: Optional[Tensor] = None
        if self.self_attention:
            k, v = self.k_proj(query), self.v_proj(query)
        elif key is not None:
            if self.encoder_decoder_attention and self.beam_size > 1 and bsz == key.size(1):
                key = key.view(key.size(0), -1, self.beam_size, key.size(2))[:, :, 0, :]
                if key_padding_mask is not None:
                    key_padding_mask = key_padding_mask.view(-1, self.beam_size, key_padding_mask.size(1))[:, 0, :]
            k = self.k_proj(key)
            if self.encoder_decoder_attention:
                v = self.v_proj(key)
            else:
                assert value is not None
                v = self.v_proj(value)
        q = q * self.scaling
        if self.bias_k is not None and k is not None and v is not None:
            k, v, key_padding_mask, attn_mask = self._add_bias(k, v, key_padding_mask, attn_mask, bsz)
        heads = self.num_heads
        q = q.contiguous().view(tgt_len, bsz * heads, self.head_dim).transpose(0, 1)
        kv_bsz = bsz
        if k is not None:
            kv_bsz = k.size(1)
            k = k.contiguous().view(-1, kv_bsz * heads, self.head_dim).transpose(0, 1)
        if v is not None:
            v = v.contiguous().view(-1, kv_bsz * heads, self.head_dim).transpose(0, 1)
        if incremental_state is not None and saved_state is not None:
            k, v, key_padding_mask, kv_bsz = self._use_cache(saved_state, k, v, key_padding_mask, static_kv)
            self._set_input_buffer(incremental_state, saved_state)
        assert k is not None and v is not None
        if key_padding_mask is not None and key_padding_mask.dim() == 0:
            key_padding_mask = None
        if self.add_zero_attn:
            k, v, key_padding_mask, attn_mask = self._append_zero_attn(k, v, key_padding_mask, attn_mask)
        src_len = k.size(1)
        if self.encoder_decoder_attention and bsz != kv_bsz:  # beam search: one encoder state per sentence
            scores = torch.einsum("bxhtd,bhsd->bxhts", q.view((kv_bsz, -1, heads) + q.size()[1:]),
                                  k.view((kv_bsz, heads) + k.size()[1:]))
            scores = scores.reshape((-1,) + scores.size()[-2:])
        else:
            scores = torch.bmm(q, k.transpose(1, 2))
        if attn_mask is not None:
            if attn_mask.dtype == torch.bool or attn_mask.dtype == torch.uint8:
                scores = scores.masked_fill(attn_mask.to(torch.bool).unsqueeze(0), float("-inf"))
            else:
                scores = scores + attn_mask.unsqueeze(0)
        if key_padding_mask is not None:
            assert key_padding_mask.size(0) == kv_bsz and key_padding_mask.size(1) == src_len
            scores = scores.view(kv_bsz, -1, heads, tgt_len, src_len).masked_fill(
                key_padding_mask.to(torch.bool)[:, None, None, None, :], float("-inf"))
            scores = scores.view(bsz * heads, tgt_len, src_len)
        if before_softmax:
            return scores, v
        weights_float = F.softmax(scores, dim=-1, dtype=torch.float32)
        probs = F.dropout(weights_float.type_as(scores), p=self.dropout, training=self.training)
        if self.encoder_decoder_attention and bsz != kv_bsz:
            attn = torch.einsum("bxhts,bhsd->bxhtd", probs.view((kv_bsz, -1, heads) + probs.size()[1:]),
                                v.view((kv_bsz, heads) + v.size()[1:]))
            attn = attn.reshape((-1,) + attn.size()[-2:])
        else:
            attn = torch.bmm(probs, v)
        attn = self.out_proj(attn.transpose(0, 1).contiguous().view(tgt_len, bsz, self.head_dim * heads))
        weights: Optional[Tensor] = None
        if need_weights:
            weights = weights_float.view(bsz, heads, tgt_len, src_len).transpose(1, 0)
            if not need_head_weights:
                weights = weights.mean(dim=0)
        return attn, weights

    # ---- incremental decoding -------------------------------------------------------------------------
    def _use_cache(self, saved_state: Dict[str, Optional[Tensor]], k: Optional[Tensor], v: Optional[Tensor],
                   key_padding_mask: Optional[Tensor], static_kv: bool):
        """Prepend (or, with static_kv, replace by) the cached keys/values and store the result in saved_state
        as [B, H, S, D]; returns (k, v, key padding mask, kv batch size)."""
        kv_bsz = k.size(0) // self.num_heads if k is not None else 0
        prev_key = saved_state.get("prev_key")
        if prev_key is not None:
            kv_bsz = prev_key.size(0)
            prev_key = prev_key.view(kv_bsz * self.num_heads, -1, self.head_dim)
            k = prev_key if static_kv or k is None else torch.cat([prev_key, k], dim=1)
        prev_value = saved_state.get("prev_value")
        if prev_value is not None:
            prev_value = prev_value.view(kv_bsz * self.num_heads, -1, self.head_dim)
            v = prev_value if static_kv or v is None else torch.cat([prev_value, v], dim=1)
        assert k is not None and v is not None
        key_padding_mask = MultiheadAttention._append_prev_key_padding_mask(
            key_padding_mask, saved_state.get("prev_key_padding_mask"), kv_bsz, k.size(1), static_kv)
        saved_state["prev_key"] = k.view(kv_bsz, self.num_heads, -1, self.head_dim)
        saved_state["prev_value"] = v.view(kv_bsz, self.num_heads, -1, self.head_dim)
        saved_state["prev_key_padding_mask"] = key_padding_mask
        return k, v, key_padding_mask, kv_bsz

    @staticmethod
    def _append_prev_key_padding_mask(key_padding_mask: Optional[Tensor], prev_key_padding_mask: Optional[Tensor],
                                      batch_size: int, src_len: int, static_kv: bool) -> Optional[Tensor]:
        """The padding mask of all cached + new keys ([B, src_len], float 0/1); a missing side is unpadded."""
        if prev_key_padding_mask is not None and static_kv:
            return prev_key_padding_mask
        if prev_key_padding_mask is not None and key_padding_mask is not None:
            return torch.cat([prev_key_padding_mask.float(), key_padding_mask.float()], dim=1)
        if prev_key_padding_mask is not None:
            missing = src_len - prev_key_padding_mask.size(1)
            if missing > 0:
                filler = torch.zeros((batch_size, missing), device=prev_key_padding_mask.device)
                return torch.cat([prev_key_padding_mask.float(), filler], dim=1)
            return prev_key_padding_mask.float()
        if key_padding_mask is not None:
            missing = src_len - key_padding_mask.size(1)
            if missing > 0:
                filler = torch.zeros((batch_size, missing), device=key_padding_mask.device)
                return torch.cat([filler, key_padding_mask.float()], dim=1)
            return key_padding_mask.float()
        return prev_key_padding_mask

    @torch.jit.export
    def reorder_incremental_state(self, incremental_state: Dict[str, Dict[str, Optional[Tensor]]],
                                  new_order: Tensor):
        """Reorder the cached batch entries (beam search)."""
        buffer = self._get_input_buffer(incremental_state)
        for key in buffer.keys():
            cached = buffer[key]
            if cached is not None:
                if self.encoder_decoder_attention:
                    if cached.size(0) * self.beam_size == new_order.size(0):
                        return incremental_state
                    if self.beam_size > 1:
                        buffer[key] = cached.index_select(0, new_order.reshape(-1, self.beam_size)[:, 0] //
                                                          self.beam_size)
                        continue
                buffer[key] = cached.index_select(0, new_order)
        return self._set_input_buffer(incremental_state, buffer)

    def _get_input_buffer(self, incremental_state: Optional[Dict[str, Dict[str, Optional[Tensor]]]]
                          ) -> Dict[str, Optional[Tensor]]:
        result = self.get_incremental_state(incremental_state, "attn_state")
        if result is not None:
            return result
        empty: Dict[str, Optional[Tensor]] = {}
        return empty

    def _set_input_buffer(self, incremental_state: Dict[str, Dict[str, Optional[Tensor]]],
                          buffer: Dict[str, Optional[Tensor]]):
        return self.set_incremental_state(incremental_state, "attn_state", buffer)

    def get_incremental_state(self, incremental_state: Optional[Dict[str, Dict[str, Optional[Tensor]]]],
                              key: str) -> Optional[Dict[str, Optional[Tensor]]]:
        """This module's entry `key` of a decoder's incremental state (entries are namespaced per module)."""
        full_key = self._incremental_state_id + "." + key
        if incremental_state is None or full_key not in incremental_state:
            return None
        return incremental_state[full_key]

    def set_incremental_state(self, incremental_state: Optional[Dict[str, Dict[str, Optional[Tensor]]]], key: str,
                              value: Dict[str, Optional[Tensor]]) -> Optional[Dict[str, Dict[str, Optional[Tensor]]]]:
        if incremental_state is not None:
            incremental_state[self._incremental_state_id + "." + key] = value
        return incremental_state

    def apply_sparse_mask(self, attn_weights: Tensor, tgt_len: int, src_len: int, bsz: int) -> Tensor:
        return attn_weights

    def upgrade_state_dict_named(self, state_dict, name: str) -> None:
        """Split the fused in_proj_weight/in_proj_bias of old checkpoints into q/k/v projections."""
        prefix = name + "." if name != "" else ""
        for suffix, part in (("in_proj_weight", "weight"), ("in_proj_bias", "bias")):
            fused = state_dict.pop(prefix + suffix, None)
            if fused is not None:
                dim = fused.shape[0] // 3
                for i, proj in enumerate(("q_proj", "k_proj", "v_proj")):
                    state_dict[f"{prefix}{proj}.{part}"] = fused[i * dim:(i + 1) * dim]
