"""fairseq.data.multi_corpus_dataset.MultiCorpusDataset: several corpora mixed item by item in set proportions.

Given datasets d_0..d_k (an OrderedDict, same item type) and a distribution p_0..p_k summing to 1,
every call of ordered_indices draws a new epoch of N = sum of len(d_i) (over p_i > 0) items: int(p_i * N)
from corpus i (the last takes the remainder), made of whole copies of the corpus plus a random subset
of it, all shuffled -- seeded by (seed, epoch) as fairseq 0.12.2 does, so resuming repeats the draw.
Corpora with p_i = 0 are left out of the index space. batch_sample keeps every batch to one corpus.
"""
from __future__ import annotations

import logging
import math
from collections import OrderedDict
from typing import Dict, List, Optional

import numpy as np

from fairseq.data import data_utils
from fairseq.data.fairseq_dataset import FairseqDataset

logger = logging.getLogger(__name__)


class MultiCorpusDataset(FairseqDataset):
    def __init__(self, datasets: Dict[str, FairseqDataset], distribution: List[float], seed: int,
                 sort_indices: bool = False, batch_sample: bool = False, distributed_rank: Optional[int] = None):
        super().__init__()
        if not isinstance(datasets, OrderedDict):
            raise ValueError("MultiCorpusDataset: datasets must be an OrderedDict (its order is the index order)")
        if len(datasets) != len(distribution):
            raise ValueError(f"MultiCorpusDataset: {len(distribution)} probabilities for {len(datasets)} datasets")
        if not math.isclose(sum(distribution), 1.0, abs_tol=1e-6):
            raise ValueError(f"MultiCorpusDataset: the distribution sums to {sum(distribution)}, not 1")
        first = next(iter(datasets.values()))
        for key, dataset in datasets.items():
            if not isinstance(dataset, FairseqDataset) or type(dataset) is not type(first):
                raise ValueError(f"MultiCorpusDataset: dataset {key!r} is a {type(dataset).__name__}; all must be "
                                 f"FairseqDatasets of one type (they share one collater)")
        self.datasets = datasets
        self.distribution = list(distribution)
        self.seed = seed
        self.sort_indices = sort_indices
        self.batch_sample = batch_sample
        self.distributed_rank = distributed_rank
        self.epoch = 1
        self.dataset_list = list(datasets.values())
        self.num_instances_per_dataset = [0 if p == 0 else len(d) for p, d in zip(distribution, self.dataset_list)]
        ends = np.cumsum(self.num_instances_per_dataset)
        self.dataset_offsets = [0] + ends[:-1].tolist()
        self._ends = ends
        self.total_num_instances = int(ends[-1])

    def ordered_indices(self):
        with data_utils.numpy_seed(self.seed, self.epoch):
            sampled, taken = [], 0
            for i, key in enumerate(self.datasets):
                if self.distribution[i] == 0:
                    continue
                last = i == len(self.datasets) - 1
                n = self.total_num_instances - taken if last else int(self.distribution[i] * self.total_num_instances)
                start = self.dataset_offsets[i]
                high = self.total_num_instances if last else self.dataset_offsets[i + 1]
                taken += n
                size = len(self.datasets[key])
                copies = n // size
                logger.info(f"sampling {n} from {key} dataset ({copies} whole copies)")
                extra = (np.random.permutation(high - start) + start)[: n - copies * size]
                sampled += list(np.concatenate((np.repeat(np.arange(start, high), copies), extra)))
            if len(sampled) != self.total_num_instances:
                raise ValueError(f"MultiCorpusDataset: sampled {len(sampled)} of {self.total_num_instances} items")
            np.random.shuffle(sampled)
            if self.sort_indices:
                sampled.sort(key=self.num_tokens)
            return np.array(sampled, dtype=np.int64)

    def _map_index(self, index: int):
        """(index within its corpus, the corpus's key): the corpora follow one another in index space."""
        k = int(np.searchsorted(self._ends, index, side="right"))
        if not 0 <= index < self.total_num_instances:
            raise ValueError(f"Invalid index: {index}, max: {self.total_num_instances}")
        return index - self.dataset_offsets[k], list(self.datasets)[k]

    def __len__(self) -> int:
        return self.total_num_instances

    def __getitem__(self, index):
        new_index, key = self._map_index(index)
        item = self.datasets[key][new_index]
        item["full_id"] = index  # the collater finds the item's corpus by it
        return item

    def collater(self, samples):
        """The collater of the first item's corpus."""
        if len(samples) == 0:
            return None
        if "full_id" in samples[0]:
            return self.datasets[self._map_index(samples[0]["full_id"])[1]].collater(samples)
        return self.dataset_list[0].collater(samples)

    def num_tokens(self, index: int):
        index, key = self._map_index(index)
        return self.datasets[key].num_tokens(index)

    def size(self, index: int):
        index, key = self._map_index(index)
        return self.datasets[key].size(index)

    @property
    def can_reuse_epoch_itr_across_epochs(self) -> bool:
        return False

    def set_epoch(self, epoch, **unused):
        super().set_epoch(epoch)
        self.epoch = epoch

    @property
    def supports_prefetch(self) -> bool:
        return False

    @property
    def supports_fetch_outside_dataloader(self) -> bool:
        return all(d.supports_fetch_outside_dataloader for d in self.dataset_list)

    def batch_by_size(self, indices, max_tokens=None, max_sentences=None, required_batch_size_multiple=1):
        """With batch_sample, the batches of each corpus apart (shuffled per rank when distributed_rank is set)."""
        if not self.batch_sample:
            return super().batch_by_size(indices, max_tokens, max_sentences, required_batch_size_multiple)
        per_key = {key: [] for key in self.datasets}
        for i in indices:
            per_key[self._map_index(i)[1]].append(i)
        batches = []
        for key, idx in per_key.items():
            batches += super().batch_by_size(np.array(idx, dtype=np.int64), max_tokens, max_sentences,
                                             required_batch_size_multiple)
        if self.distributed_rank is not None:
            with data_utils.numpy_seed(self.seed, self.epoch, self.distributed_rank):
                np.random.shuffle(batches)
        return batches
