"""fairseq.data.ConcatDataset: datasets one after the other, each repeated by its sample ratio (fairseq's name).

With sample_ratios [r1, r2, ...] dataset k contributes int(r_k * len_k) items, wrapping around itself
(item j of its part is its item j mod len_k), so ratios up- or down-sample a corpus as fairseq 0.12.2
does. load_indexed_dataset(combine=True) uses it for fairseq's numbered splits (valid, valid1, ...).
`sizes` follows the same positions (for integer ratios: each dataset's sizes tiled r_k times).
"""
from __future__ import annotations

import bisect

import numpy as np
from torch.utils.data.dataloader import default_collate

from fairseq.data.fairseq_dataset import FairseqDataset


def _sizes_of(dataset) -> np.ndarray:
    """A dataset's sizes as one array (the first field's, for datasets with a list of per-field sizes)."""
    sizes = dataset.sizes
    return np.asarray(sizes[0] if isinstance(sizes, list) else sizes)


class ConcatDataset(FairseqDataset):
    @staticmethod
    def cumsum(sequence, sample_ratios):
        """The end position of each dataset's part."""
        ends, total = [], 0
        for dataset, ratio in zip(sequence, sample_ratios):
            total += int(ratio * len(dataset))
            ends.append(total)
        return ends

    def __init__(self, datasets, sample_ratios=1):
        super().__init__()
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset: datasets should not be an empty iterable")
        if isinstance(sample_ratios, (int, float)):
            sample_ratios = [sample_ratios] * len(self.datasets)
        if len(sample_ratios) != len(self.datasets):
            raise ValueError(f"ConcatDataset: {len(sample_ratios)} sample_ratios for {len(self.datasets)} datasets")
        self.sample_ratios = list(sample_ratios)
        self.cumulative_sizes = self.cumsum(self.datasets, self.sample_ratios)
        self.real_sizes = [len(d) for d in self.datasets]
        self._sizes = self._build_sizes()

    def _build_sizes(self) -> np.ndarray:
        parts, start = [], 0
        for dataset, end, real in zip(self.datasets, self.cumulative_sizes, self.real_sizes):
            parts.append(_sizes_of(dataset)[np.arange(end - start) % max(real, 1)])
            start = end
        return np.concatenate(parts)

    def __len__(self) -> int:
        return self.cumulative_sizes[-1]

    def _get_dataset_and_sample_index(self, idx: int):
        dataset_idx = bisect.bisect_right(self.cumulative_sizes, idx)
        start = self.cumulative_sizes[dataset_idx - 1] if dataset_idx > 0 else 0
        return dataset_idx, (idx - start) % self.real_sizes[dataset_idx]

    def __getitem__(self, idx):
        dataset_idx, sample_idx = self._get_dataset_and_sample_index(idx)
        return self.datasets[dataset_idx][sample_idx]

    def collater(self, samples, **extra_args):
        """The first dataset's collater (the parts are assumed to batch alike, as in fairseq)."""
        if hasattr(self.datasets[0], "collater"):
            return self.datasets[0].collater(samples, **extra_args)
        return default_collate(samples, **extra_args)

    @property
    def sizes(self) -> np.ndarray:
        return self._sizes

    def size(self, idx: int):
        dataset_idx, sample_idx = self._get_dataset_and_sample_index(idx)
        return self.datasets[dataset_idx].size(sample_idx)

    def num_tokens(self, index: int):
        return np.max(self.size(index))

    def num_tokens_vec(self, indices):
        sizes = self._sizes[indices]
        return sizes.max(axis=1) if sizes.ndim > 1 else sizes

    def attr(self, attr: str, index: int):
        return getattr(self.datasets[bisect.bisect_right(self.cumulative_sizes, index)], attr, None)

    @property
    def supports_prefetch(self) -> bool:
        return all(getattr(d, "supports_prefetch", False) for d in self.datasets)

    def ordered_indices(self):
        """By length (for pairs: by target length, then stably by source length), so batches pad little."""
        sizes = self._sizes
        if sizes.ndim > 1:
            indices = np.arange(len(self))
            if sizes.shape[1] > 1:
                indices = indices[np.argsort(sizes[indices, 1], kind="mergesort")]
            return indices[np.argsort(sizes[indices, 0], kind="mergesort")]
        return np.argsort(sizes)

    def prefetch(self, indices):
        start = 0
        for end, dataset, real in zip(self.cumulative_sizes, self.datasets, self.real_sizes):
            if getattr(dataset, "supports_prefetch", False):
                dataset.prefetch([(i - start) % real for i in indices if start <= i < end])
            start = end

    @property
    def can_reuse_epoch_itr_across_epochs(self) -> bool:
        return all(getattr(d, "can_reuse_epoch_itr_across_epochs", True) for d in self.datasets)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        for dataset in self.datasets:
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(epoch)
        self._sizes = self._build_sizes()  # a resampled part has new sizes each epoch
