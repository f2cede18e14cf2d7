"""fairseq.data.MaskTokensDataset: BERT-style masking of every item, fairseq's draws exactly
(fairseq.data.masking.mask_tokens, seeded by (seed, epoch, index), so workers and resumes agree).

`apply_mask(dataset, vocab, ...)` returns fairseq's pair of datasets: the masked input and the
target (the original token where a position was selected, pad elsewhere). The two share one
masker, which keeps the last few masked items, so each item is masked once, not once per view.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Optional, Tuple

import numpy as np
import torch

from fairseq.data.base_wrapper_dataset import BaseWrapperDataset
from fairseq.data.masking import mask_tokens, replacement_weights


class _Masker:
    """The masking parameters, the epoch, and a small cache of (source, target) by (epoch, index)."""

    CACHE_SIZE = 8

    def __init__(self, dataset, vocab, pad_idx: int, mask_idx: int, seed: int, mask_prob: float,
                 leave_unmasked_prob: float, random_token_prob: float, freq_weighted_replacement: bool,
                 mask_whole_words, skip_masking: bool):
        if not 0.0 < mask_prob < 1.0:
            raise ValueError(f"--mask-prob must be in (0, 1), got {mask_prob}")
        if not (0.0 <= random_token_prob <= 1.0 and 0.0 <= leave_unmasked_prob <= 1.0):
            raise ValueError("--random-token-prob and --leave-unmasked-prob must be in [0, 1]")
        if random_token_prob + leave_unmasked_prob > 1.0:
            raise ValueError("--random-token-prob + --leave-unmasked-prob must be <= 1")
        if mask_whole_words is not None:
            mask_whole_words = np.asarray(mask_whole_words, dtype=bool)
            if len(mask_whole_words) != len(vocab):
                raise ValueError(f"mask_whole_words has {len(mask_whole_words)} entries, dictionary has {len(vocab)}")
        self.dataset = dataset
        self.pad_idx, self.mask_idx, self.seed = pad_idx, mask_idx, seed
        self.mask_prob = mask_prob
        self.leave_unmasked_prob = leave_unmasked_prob
        self.random_token_prob = random_token_prob
        self.mask_whole_words = mask_whole_words
        self.skip_masking = skip_masking
        self.weights = replacement_weights(vocab.count, vocab.nspecial, freq_weighted_replacement)
        self.epoch = 0  # fairseq's MaskTokensDataset masks with epoch 0 until set_epoch is called
        self._cache: "OrderedDict[tuple, Tuple[np.ndarray, np.ndarray]]" = OrderedDict()

    def __call__(self, index: int) -> Tuple[np.ndarray, np.ndarray]:
        key = (self.epoch, index)
        if key not in self._cache:
            item = np.asarray(self.dataset[index], dtype=np.int64)
            if self.skip_masking:
                self._cache[key] = (item.copy(), item.copy())
            else:
                self._cache[key] = mask_tokens(
                    item, self.seed, self.epoch, index, self.mask_idx, self.pad_idx, self.weights,
                    self.mask_prob, self.leave_unmasked_prob, self.random_token_prob, self.mask_whole_words)
            if len(self._cache) > self.CACHE_SIZE:
                self._cache.popitem(last=False)
        return self._cache[key]


class MaskTokensDataset(BaseWrapperDataset):
    """Item i: dataset[i] masked (return_masked_tokens=False) or its target (True), as LongTensors."""

    @classmethod
    def apply_mask(cls, dataset, *args, **kwargs) -> Tuple["MaskTokensDataset", "MaskTokensDataset"]:
        """(masked source dataset, target dataset) over `dataset`, sharing one masker."""
        kwargs.pop("return_masked_tokens", None)
        src = cls(dataset, *args, **kwargs, return_masked_tokens=False)
        tgt = cls(dataset, *args, **kwargs, return_masked_tokens=True, masker=src.masker)
        return src, tgt

    def __init__(self, dataset, vocab, pad_idx: int, mask_idx: int, return_masked_tokens: bool = False,
                 seed: int = 1, mask_prob: float = 0.15, leave_unmasked_prob: float = 0.1,
                 random_token_prob: float = 0.1, freq_weighted_replacement: bool = False,
                 mask_whole_words: Optional[torch.Tensor] = None, mask_multiple_length: int = 1,
                 mask_stdev: float = 0.0, skip_masking: bool = False, masker: Optional[_Masker] = None):
        super().__init__(dataset)
        if int(mask_multiple_length) != 1 or float(mask_stdev) != 0.0:
            raise ValueError("--mask-multiple-length > 1 / --mask-stdev are not supported (span masking)")
        self.vocab = vocab
        self.pad_idx, self.mask_idx = pad_idx, mask_idx
        self.return_masked_tokens = return_masked_tokens
        self.seed = seed
        self.masker = masker or _Masker(dataset, vocab, pad_idx, mask_idx, seed, mask_prob, leave_unmasked_prob,
                                        random_token_prob, freq_weighted_replacement, mask_whole_words,
                                        skip_masking)

    @property
    def epoch(self) -> int:
        return self.masker.epoch

    @property
    def can_reuse_epoch_itr_across_epochs(self) -> bool:
        return True  # only the masks change with the epoch, not the sizes

    def set_epoch(self, epoch: int, **unused) -> None:
        super().set_epoch(epoch)
        self.masker.epoch = epoch

    def __getitem__(self, index: int) -> torch.Tensor:
        source, target = self.masker(int(index))
        return torch.from_numpy((target if self.return_masked_tokens else source).copy())
