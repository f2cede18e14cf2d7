"""fairseq.data.multi_corpus_sampled_dataset.MultiCorpusSampledDataset: one corpus per batch, picked at random.

Item i holds item i of every corpus (each corpus wraps around, in its own ordered_indices order); the
collater then picks one corpus with `sampling_func(list of keys)` (uniform by default, numpy's global
RNG, as in fairseq 0.12.2) and collates that corpus's items. Sizes are the largest over the corpora.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Dict, List, Optional

import numpy as np

from fairseq.data.fairseq_dataset import FairseqDataset


def uniform_sampler(keys):
    return np.random.choice(keys, 1).item()


class MultiCorpusSampledDataset(FairseqDataset):
    def __init__(self, datasets: Dict[str, FairseqDataset], sampling_func: Optional[Callable[[List], int]] = None):
        super().__init__()
        if not isinstance(datasets, OrderedDict):
            raise ValueError("MultiCorpusSampledDataset: datasets must be an OrderedDict")
        for key, dataset in datasets.items():
            if not isinstance(dataset, FairseqDataset):
                raise ValueError(f"MultiCorpusSampledDataset: dataset {key!r} is not a FairseqDataset")
        self.datasets = datasets
        self.sampling_func = sampling_func or uniform_sampler
        self.total_num_instances = sum(len(d) for d in datasets.values())
        self._ordered_indices = None

    def __len__(self) -> int:
        return self.total_num_instances

    def ordered_indices(self):
        """Each corpus's own order is fixed on the first call; this dataset's order is 0..len-1."""
        if self._ordered_indices is None:
            self._ordered_indices = OrderedDict((k, d.ordered_indices()) for k, d in self.datasets.items())
        return np.arange(len(self))

    def _map_index_to_dataset(self, key, index: int):
        if self._ordered_indices is None:
            raise RuntimeError("Must call MultiCorpusSampledDataset.ordered_indices() first")
        return self._ordered_indices[key][index % len(self.datasets[key])]

    def __getitem__(self, index: int):
        return OrderedDict((k, d[self._map_index_to_dataset(k, index)]) for k, d in self.datasets.items())

    def collater(self, samples: List[Dict]):
        if len(samples) == 0:
            return None
        key = self.sampling_func(list(self.datasets.keys()))
        return self.datasets[key].collater([s[key] for s in samples])

    def num_tokens(self, index: int):
        return max(d.num_tokens(self._map_index_to_dataset(k, index)) for k, d in self.datasets.items())

    def size(self, index: int):
        return max(d.size(self._map_index_to_dataset(k, index)) for k, d in self.datasets.items())

    @property
    def supports_prefetch(self) -> bool:
        return all(getattr(d, "supports_prefetch", False) for d in self.datasets.values())

    def prefetch(self, indices):
        for key, dataset in self.datasets.items():
            dataset.prefetch([self._map_index_to_dataset(key, i) for i in indices])

    @property
    def supports_fetch_outside_dataloader(self) -> bool:
        return all(d.supports_fetch_outside_dataloader for d in self.datasets.values())
