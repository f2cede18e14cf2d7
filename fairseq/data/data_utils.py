"""fairseq.data.data_utils: padding a batch, batching by size, seeded numpy, loading a binarized split.

These are the functions fairseq's docs and plugins import by this path (`collate_tokens` for batched
prediction, `batch_by_size`, `numpy_seed`, `load_indexed_dataset`); our tasks use the same ones.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
from typing import Callable, List, Optional

import numpy as np
import torch

from fairseq.data.concat_dataset import ConcatDataset
from fairseq.data.data_utils_fast import batch_by_size  # noqa: F401  (fairseq's data_utils.batch_by_size)
from fairseq.data.indexed_dataset import MMapIndexedDataset, dataset_exists

logger = logging.getLogger(__name__)


def collate_tokens(values: List[torch.Tensor], pad_idx: int, eos_idx: Optional[int] = None, left_pad: bool = False,
                   move_eos_to_beginning: bool = False, pad_to_length: Optional[int] = None,
                   pad_to_multiple: int = 1, pad_to_bsz: Optional[int] = None) -> torch.Tensor:
    """1-D tensors -> one [B, T] tensor filled with pad_idx around them.

    T is the longest value (at least pad_to_length), rounded up to a multiple of pad_to_multiple
    (--required-seq-len-multiple); B is len(values) (at least pad_to_bsz). left_pad puts the padding
    first. move_eos_to_beginning rotates each value right by one (its last token, or eos_idx when
    given, goes first), fairseq's way of building decoder inputs.
    """
    size = max(v.size(0) for v in values)
    if pad_to_length is not None:
        size = max(size, pad_to_length)
    if pad_to_multiple != 1 and size % pad_to_multiple != 0:
        size = (size // pad_to_multiple + 1) * pad_to_multiple
    batch_size = len(values) if pad_to_bsz is None else max(len(values), pad_to_bsz)
    res = values[0].new_full((batch_size, size), pad_idx)
    for i, v in enumerate(values):
        dst = res[i][size - len(v):] if left_pad else res[i][: len(v)]
        if move_eos_to_beginning:
            dst[0] = v[-1] if eos_idx is None else eos_idx
            dst[1:] = v[:-1]
        else:
            dst.copy_(v)
    return res


@contextlib.contextmanager
def numpy_seed(seed: Optional[int], *addl_seeds):
    """Seed numpy's global RNG for the block with hash((seed, *addl_seeds)) % 1e6 (fairseq's rule), then
    restore its state. seed None: leave the RNG alone."""
    if seed is None:
        yield
        return
    if len(addl_seeds) > 0:
        seed = int(hash((seed, *addl_seeds)) % 1e6)
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def check_ignored_sizes(ignored, size_fn: Callable[[int], int], max_positions, raise_on_invalid: bool,
                        split_name: str = "") -> None:
    """After filtering by --max-positions: raise on the first too-long sample (fairseq's text, naming
    --skip-invalid-size-inputs-valid-test) if raise_on_invalid, else warn with how many were skipped."""
    if not len(ignored):
        return
    if raise_on_invalid:
        raise ValueError(
            f"Size of sample #{ignored[0]} is invalid (={size_fn(ignored[0])}) since "
            f"max_positions={max_positions}, skip this example with --skip-invalid-size-inputs-valid-test"
        )
    logger.warning(
        f"{len(ignored):,} samples have invalid sizes and will be skipped, "
        f"max_positions={max_positions}, first few sample ids={list(ignored[:10])}"
        + (f" (split {split_name})" if split_name else "")
    )


def load_indexed_dataset(path: str, dictionary=None, dataset_impl: Optional[str] = None, combine: bool = False,
                         default: str = "mmap"):
    """The binarized split at `path` (e.g. 'data-bin/train' for train.bin/.idx), or None if it does not
    exist. Only fairseq's mmap format is read. combine=True is fairseq's: `path` followed by path1, path2,
    ... while they exist, as one dataset (--combine-valid-subsets validates on valid + valid1 + ...)."""
    impl = dataset_impl or default
    if impl != "mmap":
        raise ValueError(f"--dataset-impl {impl}: only mmap datasets are supported (fairseq-preprocess's default)")
    if not dataset_exists(path):
        return None
    parts = []
    while not parts or (combine and dataset_exists(f"{path}{len(parts)}")):
        part_path = f"{path}{len(parts) or ''}"
        parts.append(MMapIndexedDataset(part_path))
        logger.info(f"loaded {len(parts[-1]):,} examples from: {part_path}")  # one line per part, as fairseq
    return parts[0] if len(parts) == 1 else ConcatDataset(parts)


def post_process(sentence: str, symbol: Optional[str]) -> str:
    """Undo a subword marking in detokenized text: 'sentencepiece', 'wordpiece', 'letter', 'silence',
    '_EOW', 'subword_nmt' / '@@ ' / '@@'; None or 'none' leaves it as is."""
    if symbol == "sentencepiece":
        return sentence.replace(" ", "").replace("\u2581", " ").strip()
    if symbol == "wordpiece":
        return sentence.replace(" ", "").replace("_", " ").strip()
    if symbol == "letter":
        return sentence.replace(" ", "").replace("|", " ").strip()
    if symbol == "silence":
        return _squeeze_spaces(sentence.replace("<SIL>", ""))
    if symbol == "_EOW":
        return sentence.replace(" ", "").replace("_EOW", " ").strip()
    if symbol in {"subword_nmt", "@@ ", "@@"}:
        marker = "@@ " if symbol == "subword_nmt" else symbol
        return (sentence + " ").replace(marker, "").rstrip()
    if symbol is None or symbol == "none":
        return sentence
    raise NotImplementedError(f"Unknown post_process option: {symbol}")


def _squeeze_spaces(s: str) -> str:
    while "  " in s:
        s = s.replace("  ", " ")
    return s.strip()


def lengths_to_padding_mask(lens: torch.Tensor) -> torch.Tensor:
    """[B] lengths -> [B, max] bool mask, True at padding."""
    max_len = int(torch.max(lens).item())
    return torch.arange(max_len, device=lens.device).expand(lens.size(0), max_len) >= lens.unsqueeze(1)


def lengths_to_mask(lens: torch.Tensor) -> torch.Tensor:
    return ~lengths_to_padding_mask(lens)


def unused_valid_subsets(data: str, valid_subset: str) -> List[str]:
    """fairseq's rule: the splits named valid<N>... (valid1, valid2, ...) in the data directories
    (DATA1:DATA2:...) that the comma-separated `valid_subset` leaves out."""
    found = set()
    for path in [p for p in str(data).split(":") if p]:
        if os.path.isdir(path):
            found |= {os.path.splitext(f)[0] for f in os.listdir(path) if re.match("valid*[0-9].*", f)}
    return sorted(found - set(valid_subset.split(",")))


def raise_if_valid_subsets_unintentionally_ignored(train_cfg) -> None:
    """fairseq's check on a grouped training config: a ValueError when the data directory holds valid splits
    that --valid-subset leaves out, unless --ignore-unused-valid-subsets, --combine-valid-subsets or
    --disable-validation says so, or the task reads no data directory. (fairseq-train runs the same rule
    on its arguments right after parsing: fairseq.flag_rules.check_valid_subsets.)"""
    dataset = train_cfg.dataset
    if (dataset.ignore_unused_valid_subsets or dataset.combine_valid_subsets or dataset.disable_validation
            or not hasattr(train_cfg.task, "data")):
        return
    ignored = unused_valid_subsets(train_cfg.task.data, dataset.valid_subset)
    if ignored:
        raise ValueError(f"Valid paths {ignored} will be ignored. Set --combine-val to combine them or "
                         "--ignore-unused-valid-subsets to ignore them.")
