"""fairseq.data.data_utils_fast: the batching rule (fairseq compiles it with Cython; here numpy + one loop).

A batch costs len(batch) * (longest sample in it) tokens and may not exceed max_tokens nor hold more
than max_sentences samples (<= 0: no limit). While growing, a batch is committed only at sizes that
are a multiple of bsz_mult (or below bsz_mult); on overflow the uncommitted tail starts the next
batch, and if the tail alone overflows max_tokens, all of it but the current sample is closed first.
Every sample is visited once, so the cost is linear in len(indices).
"""
from __future__ import annotations

from typing import Callable, List, Optional

import numpy as np


def batch_by_size_vec(indices: np.ndarray, num_tokens_vec: np.ndarray, max_tokens: int, max_sentences: int,
                      bsz_mult: int) -> List[np.ndarray]:
    """Batches of `indices` in order; num_tokens_vec[pos] is the size of indices[pos]."""
    indices = np.asarray(indices, dtype=np.int64)
    n = len(indices)
    if n == 0:
        return []
    ntok = np.asarray(num_tokens_vec, dtype=np.int64)
    max_tokens, max_sentences, bsz_mult = int(max_tokens), int(max_sentences), int(bsz_mult)
    if bsz_mult < 1:
        raise ValueError(f"--required-batch-size-multiple must be >= 1, got {bsz_mult}")
    if max_tokens > 0 and int(ntok.max()) > max_tokens:
        raise ValueError(f"Sentences lengths should not exceed max_tokens={max_tokens}")
    ends = [0] * (n + 1)
    count = 0
    batch_start = 0
    tail_max = 0
    batch_max = 0
    for pos, t in enumerate(ntok.tolist()):
        tail_max = max(tail_max, t)
        new_end = pos + 1
        new_max = max(batch_max, tail_max)
        new_sents = new_end - batch_start
        overflow = (max_sentences > 0 and new_sents > max_sentences) or (
            max_tokens > 0 and new_sents * new_max > max_tokens
        )
        size_ok = new_sents < bsz_mult or new_sents % bsz_mult == 0
        if overflow:
            tail_tokens = tail_max * (new_end - ends[count])
            if max_tokens > 0 and tail_tokens > max_tokens:
                count += 1
                ends[count] = pos
                tail_max = t
            batch_start = ends[count]
            count += 1
            new_max = tail_max
        if overflow or size_ok:
            ends[count] = new_end
            batch_max = new_max
            tail_max = 0
    if ends[count] != n:
        count += 1
    return np.split(indices, ends[:count])


def batch_by_size_fn(indices: np.ndarray, num_tokens_fn: Callable[[int], int], max_tokens: int,
                     max_sentences: int, bsz_mult: int) -> List[np.ndarray]:
    """batch_by_size_vec with each size asked of num_tokens_fn(index)."""
    indices = np.asarray(indices, dtype=np.int64)
    num_tokens_vec = np.fromiter((num_tokens_fn(int(i)) for i in indices), dtype=np.int64, count=len(indices))
    return batch_by_size_vec(indices, num_tokens_vec, max_tokens, max_sentences, bsz_mult)


def batch_by_size(indices, num_tokens_fn: Optional[Callable[[int], int]], num_tokens_vec=None, max_tokens=None,
                  max_sentences=None, required_batch_size_multiple: int = 1, fixed_shapes=None) -> List[np.ndarray]:
    """Split `indices` (in order) into batches bounded by max_tokens and max_sentences (the rule above;
    fairseq's data_utils.batch_by_size, re-exported there). Sizes come from num_tokens_vec (one per position of `indices`) when given,
    else from num_tokens_fn(index)."""
    if fixed_shapes is not None:
        raise ValueError("batch_by_size: fixed_shapes (TPU batching) is not supported")
    max_tokens = int(max_tokens) if max_tokens is not None else -1
    max_sentences = int(max_sentences) if max_sentences is not None else -1
    if not isinstance(indices, np.ndarray):
        indices = np.fromiter(indices, dtype=np.int64, count=-1)
    if num_tokens_vec is not None:
        num_tokens_vec = np.asarray(num_tokens_vec, dtype=np.int64)
        if len(num_tokens_vec) != len(indices):
            raise ValueError(f"batch_by_size: num_tokens_vec has {len(num_tokens_vec)} entries for "
                             f"{len(indices)} indices")
        return batch_by_size_vec(indices, num_tokens_vec, max_tokens, max_sentences, required_batch_size_multiple)
    return batch_by_size_fn(indices, num_tokens_fn, max_tokens, max_sentences, required_batch_size_multiple)
