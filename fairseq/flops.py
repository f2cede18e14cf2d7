"""What a token-dropping step should cost: the ideal FLOP ratios printed beside every measured speedup.

One place for the arithmetic so the quickstart, the benchmarks and the quality study report the same
ideal. Counts are multiply-adds of the encoder layers only (embeddings and the LM head left out), per
sequence: projections 4*n*E^2 (q, k, v over the key/value rows, output over the query rows), attention
scores and mixing 2*n_q*n_kv*E, FFN 2*n_q*E*F. The layer split is token_drop.drop_layer_split's.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

from fairseq.token_drop import drop_layer_split, is_full_phase, keep_count


def encoder_layer_macs(n_q: int, n_kv: int, embed_dim: int, ffn_dim: int) -> float:
    """Multiply-adds of one post-LN encoder layer with n_q query rows attending over n_kv rows."""
    E, F = embed_dim, ffn_dim
    return 2 * n_q * E * E + 2 * n_kv * E * E + 2 * n_q * n_kv * E + 2 * n_q * E * F


def token_drop_step_ratio(layers: int, seq_len: int, embed_dim: int, ffn_dim: int, p: float,
                          token_drop_layers: Union[None, str, Sequence[int]] = None) -> float:
    """Cost of one token-dropping forward/backward relative to a full one (1.0 when p == 0)."""
    if p <= 0:
        return 1.0
    d, last_kept = drop_layer_split(layers, token_drop_layers)
    T, K = seq_len, keep_count(seq_len, p)

    def layer(n_q: int, n_kv: int) -> float:
        return encoder_layer_macs(n_q, n_kv, embed_dim, ffn_dim)

    full = layers * layer(T, T)
    drop = (d * layer(T, T) + layer(K, T) + (last_kept - d) * layer(K, K)
            + (layers - 1 - last_kept) * layer(T, T))
    return drop / full


def layerwise_drop_step_ratio(layers: int, seq_len: int, embed_dim: int, ffn_dim: int, keep: int,
                              start: int, end: int) -> float:
    """Cost of a forward/backward whose layers start..end each run on `keep` positions alone (queries and
    keys; random-LTD) relative to a full one; the other layers run on all seq_len positions."""
    full = encoder_layer_macs(seq_len, seq_len, embed_dim, ffn_dim)
    n = end - start + 1
    return ((layers - n) * full + n * encoder_layer_macs(keep, keep, embed_dim, ffn_dim)) / (layers * full)


def sctd_full_pass_ratio(layers: int, seq_len: int, embed_dim: int, ffn_dim: int,
                         full_mlm_weight: float = 0.0) -> float:
    """Cost of ScTD's full pass relative to a full update.

    All of it when its MLM loss is trained on (w_full > 0); otherwise what the KL terms read
    (fairseq.sctd.compute_loss): layers 0..L-2 on every position, the last layer for <s> alone."""
    if full_mlm_weight != 0.0:
        return 1.0
    full = encoder_layer_macs(seq_len, seq_len, embed_dim, ffn_dim)
    return ((layers - 1) * full + encoder_layer_macs(1, seq_len, embed_dim, ffn_dim)) / (layers * full)


def ideal_step_ratio(layers: int, seq_len: int, embed_dim: int, ffn_dim: int, p: float,
                     sctd_interval: int = 0, full_mlm_weight: float = 0.0) -> float:
    """Average cost of a token-dropping (or ScTD) update relative to a full update, no schedule.

    ScTD adds one full pass (sctd_full_pass_ratio) every `sctd_interval` updates.
    """
    if p <= 0:
        return 1.0
    ratio = token_drop_step_ratio(layers, seq_len, embed_dim, ffn_dim, p)
    if sctd_interval > 0:
        ratio += sctd_full_pass_ratio(layers, seq_len, embed_dim, ffn_dim, full_mlm_weight) / sctd_interval
    return ratio


def schedule_ideal_ratio(layers: int, seq_len: int, embed_dim: int, ffn_dim: int, p: float,
                         sctd_interval: int, total_updates: int, warmup_updates: int = 0,
                         final_full_updates: int = 0,
                         token_drop_layers: Optional[Union[str, Sequence[int]]] = None,
                         full_mlm_weight: float = 0.0) -> float:
    """Mean cost of updates u = 0 .. total_updates-1 relative to a full update, with full phases.

    Update u (u = updates completed before it) runs the full model, cost 1 and no ScTD pass, when
    u < warmup_updates or u >= total_updates - final_full_updates; otherwise the dropping model, plus
    ScTD's full pass (sctd_full_pass_ratio) when sctd_interval > 0 and u % sctd_interval == 0. The
    phase rule is the trainer's own (token_drop.is_full_phase), so this is the mean over exactly the
    updates a run performs.
    """
    if total_updates <= 0:
        raise ValueError(f"total_updates {total_updates}: need at least one update")
    if p <= 0:
        return 1.0
    drop = token_drop_step_ratio(layers, seq_len, embed_dim, ffn_dim, p, token_drop_layers)
    full_pass = sctd_full_pass_ratio(layers, seq_len, embed_dim, ffn_dim, full_mlm_weight)
    cost = 0.0
    for u in range(total_updates):
        if is_full_phase(u, warmup_updates, final_full_updates, total_updates):
            cost += 1.0
        else:
            cost += drop + (full_pass if sctd_interval > 0 and u % sctd_interval == 0 else 0.0)
    return cost / total_updates


def roberta_train_flops(layers: int, seq_len: int, embed_dim: int, ffn_dim: int, vocab_size: int,
                        masked_rows: float, batch: int = 1) -> float:
    """FLOPs of one full-model training step, for model-FLOP utilisation (MFU).

    The usual MFU convention: 2 FLOPs per multiply-add, backward = 2x forward, so 6x the forward
    multiply-adds; the encoder layers (attention included) plus the LM head on the `masked_rows`
    projected rows per sequence (dense E x E and the tied E x V output); embeddings, norms and
    element-wise work are not counted.
    """
    encoder = layers * encoder_layer_macs(seq_len, seq_len, embed_dim, ffn_dim)
    head = masked_rows * (embed_dim * embed_dim + embed_dim * vocab_size)
    return 6.0 * (encoder + head) * batch
