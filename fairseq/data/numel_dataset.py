"""fairseq.data.NumelDataset: the length of each item of a dataset; reduce=True sums them over a batch
("ntokens"), else a tensor of lengths ("src_lengths")."""
import numpy as np
import torch

from fairseq.data.base_wrapper_dataset import BaseWrapperDataset


class NumelDataset(BaseWrapperDataset):
    def __init__(self, dataset, reduce: bool = False):
        super().__init__(dataset)
        self.reduce = reduce

    def __getitem__(self, index):
        item = self.dataset[index]
        return torch.numel(item) if torch.is_tensor(item) else np.size(item)

    def __len__(self):
        return len(self.dataset)

    def collater(self, samples):
        return sum(samples) if self.reduce else torch.tensor(samples)
