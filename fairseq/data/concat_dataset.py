"""ConcatDataset: datasets one after the other (fairseq's name), with the `sizes` that token blocks and
batching read. load_indexed_dataset(combine=True) uses it for fairseq's numbered splits (valid, valid1, ...)."""
from __future__ import annotations

import numpy as np
import torch


class ConcatDataset(torch.utils.data.ConcatDataset):
    def __init__(self, datasets):
        super().__init__(list(datasets))
        self.sizes = np.concatenate([np.asarray(d.sizes) for d in self.datasets])

    def size(self, index: int):
        return self.sizes[index]

    def num_tokens(self, index: int):
        return self.sizes[index]
