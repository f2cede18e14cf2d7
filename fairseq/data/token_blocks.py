"""Cutting a stream of sentences into training blocks, exactly as fairseq's TokenBlockDataset
(fairseq.data.token_block_dataset wraps this).

Modes (masked_lm passes block_size = tokens_per_sample - 1, leaving room for the <s> it prepends):
  none          cut the concatenated stream every block_size tokens; the last block may be shorter.
  complete      pack whole sentences greedily; a sentence joins the block if the block stays
                <= block_size or is empty (so a long sentence is its own oversized block).
  complete_doc  like complete, but a sentence of length document_sep_len (an empty line's lone
                </s>) closes the block and is itself dropped; blocks of length <= 1 are dropped.
  eos           one block per sentence.
Offsets are half-open token ranges into the concatenation of all sentences (separators included).
The Cython module `_token_blocks` does the greedy packing fast; without it a numpy version that
jumps one block at a time with searchsorted gives the same result.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

try:  # built by setup.py; optional
    from fairseq.data import _token_blocks as _fast
except ImportError:  # pragma: no cover - exercised when the extension is missing
    _fast = None

BREAK_MODES = ("none", "complete", "complete_doc", "eos")


def _check(sizes, block_size, break_mode) -> np.ndarray:
    if break_mode not in BREAK_MODES:
        raise ValueError(f"--sample-break-mode {break_mode!r} is invalid; choose from: {', '.join(BREAK_MODES)}")
    sizes = np.asarray(sizes)
    if sizes.ndim != 1:
        raise ValueError(f"sizes must be 1-D, got shape {sizes.shape}")
    if len(sizes) and int(sizes.min()) < 0:
        raise ValueError("sizes must be non-negative")
    if break_mode != "eos" and (block_size is None or block_size <= 0):
        raise ValueError(f"block size must be positive for --sample-break-mode {break_mode}, got {block_size}")
    return sizes


def _none_mode(sizes: np.ndarray, block_size: int) -> np.ndarray:
    total = int(sizes.sum(dtype=np.int64))
    starts = np.arange(0, total, block_size, dtype=np.int64)
    return np.stack([starts, np.minimum(starts + block_size, total)], axis=1).reshape(-1, 2)


def _eos_mode(sizes: np.ndarray) -> np.ndarray:
    ends = np.cumsum(sizes, dtype=np.int64)
    return np.stack([ends - sizes.astype(np.int64), ends], axis=1).reshape(-1, 2)


def _pack_python(sizes: np.ndarray, block_size: int, doc: bool, sep_len: int) -> np.ndarray:
    """Greedy packing one block per step: the block from sentence i ends at the last sentence j
    with cum[j+1]-cum[i] <= block_size (at least one sentence), found by searchsorted.
    In complete_doc mode the block also stops before the next separator."""
    n = len(sizes)
    cum = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(sizes, out=cum[1:])
    seps = np.flatnonzero(sizes == sep_len) if doc else np.zeros(0, dtype=np.int64)
    out = []
    i, k = 0, 0  # k: index into seps of the first separator >= i
    while i < n:
        if doc:
            while k < len(seps) and seps[k] < i:
                k += 1
            if k < len(seps) and seps[k] == i:
                i += 1
                continue
            limit = seps[k] if k < len(seps) else n  # the block may not pass this sentence
        else:
            limit = n
        j = int(np.searchsorted(cum, cum[i] + block_size, side="right")) - 1  # cum[j] <= cum[i]+bs
        # an empty block takes sentences until it holds a token, whatever their size
        first_nonempty_end = min(int(np.searchsorted(cum, cum[i], side="right")), n)
        j = min(max(j, first_nonempty_end), limit)
        size = cum[j] - cum[i]
        if (doc and size > 1) or (not doc and size > 0):
            out.append((cum[i], cum[j]))
        i = j
    return np.array(out, dtype=np.int64).reshape(-1, 2)


def _b2d_numpy(sizes: np.ndarray, slices: np.ndarray) -> np.ndarray:
    ends = np.cumsum(sizes, dtype=np.int64)
    n = len(sizes)
    s, e = slices[:, 0], slices[:, 1]
    start_ds = np.minimum(np.searchsorted(ends, s, side="right"), max(n - 1, 0))
    offset = s - (ends[start_ds] - sizes[start_ds]) if n else s
    end_ds = np.minimum(np.searchsorted(ends, np.maximum(e - 1, 0), side="right"), max(n - 1, 0))
    end_ds = np.where(e <= s, start_ds, end_ds)
    return np.stack([start_ds, offset, end_ds], axis=1).astype(np.int64).reshape(-1, 3)


def build_blocks(
    sizes, block_size, break_mode: str, document_sep_len: int = 1, use_fast: bool = True
) -> Tuple[np.ndarray, np.ndarray]:
    """Return (slice_indices int64 [n,2], block_to_dataset_index int64 [n,3]).

    block_to_dataset_index rows are (first sentence, offset of the block's first token in it,
    last sentence), fairseq's layout; in eos mode it is (i, 0, i).
    """
    break_mode = break_mode or "none"
    sizes = _check(sizes, block_size, break_mode)
    fast = _fast if use_fast else None
    if break_mode == "none":
        slices = _none_mode(sizes, int(block_size))
    elif break_mode == "eos":
        slices = _eos_mode(sizes)
        n = len(sizes)
        ar = np.arange(n, dtype=np.int64)
        return slices, np.stack([ar, np.zeros(n, dtype=np.int64), ar], axis=1).reshape(-1, 3)
    else:
        doc = break_mode == "complete_doc"
        if fast is not None:
            slices = fast.pack_blocks(sizes, int(block_size), doc, int(document_sep_len))
        else:
            slices = _pack_python(sizes, int(block_size), doc, int(document_sep_len))
    if fast is not None:
        b2d = fast.block_to_dataset_index(sizes, slices)
    else:
        b2d = _b2d_numpy(sizes, slices)
    return slices, b2d


def has_fast_path() -> bool:
    return _fast is not None
