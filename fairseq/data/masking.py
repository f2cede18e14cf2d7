"""fairseq's masked-LM corruption, reproduced draw for draw.

fairseq seeds numpy's legacy global RNG with int(hash((seed, epoch, index)) % 1e6) and then draws,
in this order: rand() for the count, choice(sz, k, replace=False) for the positions, rand(sz) for
"random-or-unmask", rand(sz) for "unmask vs random", and choice(V, r, p=weights) for the random
tokens. A RandomState seeded the same way yields the same streams without touching global state.
With whole-word masking the unit is a word (a token that begins a word plus its continuations).
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """fairseq's data_utils.numpy_seed rule for (seed, epoch, index)."""
    return int(hash((seed, epoch, index)) % 1e6)


def replacement_weights(counts, nspecial: int = 4, freq_weighted: bool = False) -> np.ndarray:
    """Probabilities of drawing each id as a random replacement: uniform (or by count), specials 0."""
    w = np.array(counts, dtype=np.float64) if freq_weighted else np.ones(len(counts))
    w[:nspecial] = 0
    return w / w.sum()


def mask_tokens(
    item: np.ndarray,
    seed: int,
    epoch: int,
    index: int,
    mask_idx: int,
    pad_idx: int,
    weights: np.ndarray,
    mask_prob: float = 0.15,
    leave_unmasked_prob: float = 0.1,
    random_token_prob: float = 0.1,
    word_begins: Optional[np.ndarray] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Return (source, target) for one sample; target holds the original token at every selected
    position (kept, replaced or <mask>) and pad elsewhere."""
    item = np.asarray(item, dtype=np.int64)
    if (item == mask_idx).any():
        raise ValueError(f"sample {index} already contains the mask symbol {mask_idx}")
    rng = np.random.RandomState(sample_seed(seed, epoch, index))
    word_lens = None
    sz = len(item)
    if word_begins is not None:
        begins = np.asarray(word_begins, dtype=bool)[item]
        starts = np.flatnonzero(begins)
        if sz and (len(starts) == 0 or starts[0] != 0):
            raise ValueError(f"sample {index}: first token {item[0]} does not begin a word (whole-word masking)")
        word_lens = np.diff(np.append(starts, sz))
        sz = len(starts)

    mask = np.zeros(sz, dtype=bool)
    num_mask = int(mask_prob * sz + rng.rand())
    mask[rng.choice(sz, num_mask, replace=False)] = True
    selected = mask if word_lens is None else np.repeat(mask, word_lens)
    target = np.full(len(item), pad_idx, dtype=np.int64)
    target[selected] = item[selected]

    rand_mask = None
    rand_or_unmask_prob = random_token_prob + leave_unmasked_prob
    if rand_or_unmask_prob > 0.0:
        rand_or_unmask = mask & (rng.rand(sz) < rand_or_unmask_prob)
        if random_token_prob == 0.0:
            unmask = rand_or_unmask
        elif leave_unmasked_prob == 0.0:
            unmask, rand_mask = None, rand_or_unmask
        else:
            decision = rng.rand(sz) < leave_unmasked_prob / rand_or_unmask_prob
            unmask = rand_or_unmask & decision
            rand_mask = rand_or_unmask & ~decision
        if unmask is not None:
            mask = mask ^ unmask
    if word_lens is not None:
        mask = np.repeat(mask, word_lens)
    source = item.copy()
    source[mask] = mask_idx
    if rand_mask is not None and rand_mask.sum() > 0:
        if word_lens is not None:
            rand_mask = np.repeat(rand_mask, word_lens)
        source[rand_mask] = rng.choice(len(weights), int(rand_mask.sum()), p=weights)
    return source, target
