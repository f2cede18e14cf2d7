"""fairseq.data.PrependTokenDataset: puts `token` (e.g. <s>) before every item; sizes grow by one."""
import numpy as np
import torch

from fairseq.data.base_wrapper_dataset import BaseWrapperDataset


class PrependTokenDataset(BaseWrapperDataset):
    def __init__(self, dataset, token=None):
        super().__init__(dataset)
        self.token = token
        self._sizes = np.array(dataset.sizes) + 1 if token is not None else dataset.sizes

    def __getitem__(self, idx):
        item = self.dataset[idx]
        if self.token is not None:
            item = torch.cat([item.new([self.token]), item])
        return item

    @property
    def sizes(self):
        return self._sizes

    def num_tokens(self, index):
        return self.dataset.num_tokens(index) + (1 if self.token is not None else 0)

    def size(self, index):
        return self.dataset.size(index) + (1 if self.token is not None else 0)
