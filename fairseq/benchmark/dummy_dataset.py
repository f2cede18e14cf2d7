"""fairseq.benchmark.dummy_dataset.DummyDataset: `num_items` items that all collate to one fixed batch."""
from __future__ import annotations

import numpy as np

from fairseq.data.fairseq_dataset import FairseqDataset


class DummyDataset(FairseqDataset):
    def __init__(self, batch, num_items: int, item_size: int):
        super().__init__()
        self.batch = batch
        self.num_items = num_items
        self.item_size = item_size

    def __getitem__(self, index):
        return index

    def __len__(self) -> int:
        return self.num_items

    def collater(self, samples):
        return self.batch

    @property
    def sizes(self):
        return np.full(self.num_items, self.item_size, dtype=np.int64)

    def num_tokens(self, index):
        return self.item_size

    def num_tokens_vec(self, indices):
        return np.full(len(indices), self.item_size, dtype=np.int64)

    def size(self, index):
        return self.item_size

    def ordered_indices(self):
        return np.arange(self.num_items)
