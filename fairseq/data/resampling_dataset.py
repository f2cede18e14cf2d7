"""fairseq.data.ResamplingDataset: each epoch, a fresh weighted sample (with or without replacement) of a dataset.

Multilingual and multi-corpus recipes use it to up- or down-sample a corpus: item i of epoch e is item
indices_e[i] of the wrapped dataset, where indices_e are len(dataset) * size_ratio (rounded up) draws
with probabilities proportional to `weights` (uniform without them). The draw is a function of
(seed, epoch) only -- numpy's RandomState seeded with [42, seed mod 2**32, epoch], as fairseq 0.12.2
seeds it -- so a resumed run sees the same samples as an uninterrupted one.
"""
from __future__ import annotations

import logging

import numpy as np

from fairseq.data.base_wrapper_dataset import BaseWrapperDataset

logger = logging.getLogger(__name__)


class ResamplingDataset(BaseWrapperDataset):
    def __init__(self, dataset, weights=None, replace: bool = True, size_ratio: float = 1.0,
                 batch_by_size: bool = True, seed: int = 0, epoch: int = 1):
        super().__init__(dataset)
        if weights is not None:
            if len(weights) != len(dataset):
                raise ValueError(f"ResamplingDataset: {len(weights)} weights for {len(dataset)} items")
            weights = np.asarray(weights, dtype=np.float64)
            weights = weights / weights.sum()
        self.weights = weights
        if not size_ratio > 0.0:
            raise ValueError(f"ResamplingDataset: size_ratio must be > 0 (got {size_ratio})")
        if not replace and not size_ratio < 1.0:
            raise ValueError(f"ResamplingDataset: without replacement size_ratio must be < 1 (got {size_ratio})")
        self.replace = replace
        self.size_ratio = float(size_ratio)
        self.actual_size = int(np.ceil(len(dataset) * self.size_ratio))
        self.batch_by_size = batch_by_size
        self.seed = seed
        self._cur_epoch = None
        self._cur_indices = None
        self.set_epoch(epoch)

    def __getitem__(self, index):
        return self.dataset[self._cur_indices[index]]

    def __len__(self) -> int:
        return self.actual_size

    @property
    def sizes(self):
        if isinstance(self.dataset.sizes, list):  # one array per field (e.g. source, target)
            return [s[self._cur_indices] for s in self.dataset.sizes]
        return self.dataset.sizes[self._cur_indices]

    def num_tokens(self, index):
        return self.dataset.num_tokens(self._cur_indices[index])

    def num_tokens_vec(self, indices):
        return self.dataset.num_tokens_vec(self._cur_indices[indices])

    def size(self, index):
        return self.dataset.size(self._cur_indices[index])

    def ordered_indices(self):
        """By size (ties by position) when batching by size, else in sampled order."""
        if self.batch_by_size:
            return np.lexsort([np.arange(len(self)), self.sizes])
        return np.arange(len(self))

    def prefetch(self, indices):
        self.dataset.prefetch(self._cur_indices[indices])

    @property
    def can_reuse_epoch_itr_across_epochs(self) -> bool:
        return False  # the sample, hence the batches, change every epoch

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        if epoch == self._cur_epoch:
            return
        self._cur_epoch = epoch
        rng = np.random.RandomState([42, self.seed % (2 ** 32), epoch])
        self._cur_indices = rng.choice(len(self.dataset), self.actual_size, replace=self.replace, p=self.weights)
        logger.debug(f"ResamplingDataset: epoch {epoch} resampled {self.actual_size} of {len(self.dataset)} items")
