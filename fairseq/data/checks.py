"""Data checked before it is trusted: what the files can tell is checked when a split is loaded.

The index's own consistency with its .bin is checked by MMapIndexedDataset when it opens. Here:
token ids against the dictionary (a streamed min/max over the .bin, read a block at a time, so any
corpus is checked in bounded memory and the training process's memory map stays untouched), a split
with nothing to train on, and validation samples that the first validation would otherwise reject
only after a whole epoch. Each failure is one ValueError naming the file or split, the value and
what to do.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from fairseq.data.indexed_dataset import MMapIndexedDataset, data_file_path

BLOCK_TOKENS = 1 << 22


def check_token_ids(ds: MMapIndexedDataset, vocab_size: int, dict_path: str) -> None:
    """Every id in ds's .bin is in [0, vocab_size); afterwards every read of ds checks its own ids too."""
    bin_path = data_file_path(ds.prefix)
    if not np.issubdtype(ds.dtype, np.integer):
        raise ValueError(f"{bin_path}: dtype {ds.dtype} is not an integer type, so it cannot hold token ids")
    start = 0
    with open(bin_path, "rb") as f:  # plain reads: touching the whole memory map would keep it all resident
        while True:
            block = np.fromfile(f, dtype=ds.dtype, count=BLOCK_TOKENS)
            if len(block) == 0:
                break
            if int(block.max()) >= vocab_size or int(block.min()) < 0:
                k = int(np.flatnonzero((block >= vocab_size) | (block < 0))[0])
                raise ValueError(
                    f"{bin_path}: token id {int(block[k])} in sentence {ds.sentence_at(start + k)} is not below the "
                    f"dictionary size {vocab_size} ({dict_path}); binarize the data with this dictionary "
                    f"(fairseq-preprocess --srcdict)"
                )
            start += len(block)
    ds.vocab_size = vocab_size


def check_not_empty(split: str, prefix: str, num_sentences: int, num_samples: int, break_mode: str) -> None:
    """A split with no samples would loop over empty epochs (or 'finish' having trained nothing)."""
    if num_sentences == 0:
        raise ValueError(f"split {split!r} is empty: {prefix}.bin/.idx hold 0 sentences")
    if num_samples == 0:
        raise ValueError(
            f"split {split!r} gives 0 samples: the {num_sentences} sentences of {prefix}.bin/.idx are all blank "
            f"lines, which --sample-break-mode {break_mode} drops"
        )


def sample_sizes(sizes) -> np.ndarray:
    """One size per sample from a dataset's `sizes`: fairseq's nested datasets keep a list of arrays
    (one per sized field), and a sample is as long as its longest field."""
    if isinstance(sizes, (list, tuple)):
        return np.max(np.vstack([np.asarray(s) for s in sizes]), axis=0)
    return np.asarray(sizes)


def check_valid_sizes(split: str, sizes: np.ndarray, max_positions: Optional[int], skip_invalid: bool) -> None:
    """What the first validation of `split` would reject, found at start-up rather than after an epoch.

    Training skips samples longer than max_positions (as fairseq does); validation refuses them unless
    --skip-invalid-size-inputs-valid-test is given (fairseq's rule), so say so before training. With the
    flag, a split none of whose samples fits would validate on nothing, log valid_loss 0 and make that
    checkpoint_best.pt: an error too.
    """
    sizes = sample_sizes(sizes)
    if not skip_invalid and max_positions is not None:
        too_long = np.flatnonzero(sizes > max_positions)
        if too_long.size:
            i = int(too_long[0])
            raise ValueError(
                f"split {split!r}: {too_long.size} sample(s) longer than max_positions={max_positions}, the first "
                f"is #{i} with {int(sizes[i])} tokens; pass --skip-invalid-size-inputs-valid-test to skip them in "
                f"validation, or raise --tokens-per-sample"
            )
    fit = int((sizes <= max_positions).sum()) if max_positions is not None else len(sizes)
    if fit == 0:
        raise ValueError(f"--valid-subset {split}: none of its {len(sizes):,} samples fits max_positions={max_positions}, "
                         "so there is nothing to validate on; raise --max-positions/--tokens-per-sample, "
                         "choose another --valid-subset or pass --disable-validation")
