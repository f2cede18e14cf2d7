"""fairseq.data.FairseqDataset: what the batch iterator and the tasks ask of a dataset.

A dataset gives items by index, a `collater` that turns a list of items into a batch, and sizes
(`num_tokens`, `size`, `sizes`) that batching and length filtering read. Wrappers (BaseWrapperDataset)
forward all of it to the dataset they wrap and change one thing.
"""
from __future__ import annotations

import numpy as np
import torch

from fairseq.data.data_utils_fast import batch_by_size


class EpochListening:
    """Datasets whose items depend on the epoch (e.g. masking) hear about it through set_epoch."""

    @property
    def can_reuse_epoch_itr_across_epochs(self) -> bool:
        return False

    def set_epoch(self, epoch: int) -> None:
        pass


class FairseqDataset(torch.utils.data.Dataset, EpochListening):
    def __getitem__(self, index):
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def collater(self, samples):
        """A mini-batch from a list of items."""
        raise NotImplementedError

    def num_tokens(self, index: int) -> int:
        """The number of tokens of item `index`, for --max-tokens batching."""
        raise NotImplementedError

    def num_tokens_vec(self, indices):
        """num_tokens of many indices at once (a numpy array); optional speed-up."""
        raise NotImplementedError

    def size(self, index: int):
        """The size of item `index`, for --max-positions filtering."""
        raise NotImplementedError

    def ordered_indices(self) -> np.ndarray:
        """The order in which batches are built (the epoch order is then a shuffle of the batches)."""
        return np.arange(len(self), dtype=np.int64)

    @property
    def supports_prefetch(self) -> bool:
        return False

    def attr(self, attr: str, index: int):
        return getattr(self, attr, None)

    def prefetch(self, indices) -> None:
        raise NotImplementedError

    def get_batch_shapes(self):
        return None

    def batch_by_size(self, indices, max_tokens=None, max_sentences=None, required_batch_size_multiple=1):
        """Batches of `indices` (data_utils.batch_by_size) with this dataset's sizes."""
        try:
            num_tokens_vec = np.asarray(self.num_tokens_vec(indices), dtype=np.int64)
        except NotImplementedError:
            num_tokens_vec = None
        return batch_by_size(indices, num_tokens_fn=self.num_tokens, num_tokens_vec=num_tokens_vec,
                                        max_tokens=max_tokens, max_sentences=max_sentences,
                                        required_batch_size_multiple=required_batch_size_multiple)

    def filter_indices_by_size(self, indices, max_sizes):
        """(kept indices, ignored indices) for a maximum size."""
        indices = np.asarray(indices, dtype=np.int64)
        if max_sizes is None:
            return indices, []
        if isinstance(max_sizes, (int, float)) and isinstance(getattr(self, "sizes", None), np.ndarray):
            too_long = self.sizes[indices] > max_sizes
            return indices[~too_long], indices[too_long].tolist()
        keep = np.array([_fits(self.size(int(i)), max_sizes) for i in indices], dtype=bool)
        return indices[keep], indices[~keep].tolist()

    @property
    def supports_fetch_outside_dataloader(self) -> bool:
        return True


def _fits(size, max_sizes) -> bool:
    """size <= max_sizes, element-wise for tuples (None = no limit)."""
    if isinstance(max_sizes, (int, float)):
        return (max(size) if isinstance(size, tuple) else size) <= max_sizes
    if not isinstance(size, (tuple, list)):
        return all(size <= m for m in max_sizes if m is not None)
    return all(a is None or b is None or a <= b for a, b in zip(size, max_sizes))


class FairseqIterableDataset(torch.utils.data.IterableDataset, EpochListening):
    """A stream of items (no random access)."""

    def __iter__(self):
        raise NotImplementedError
