"""fairseq.data.ListDataset: a list (or any sequence) as a dataset whose collater returns the items as is."""
from fairseq.data.base_wrapper_dataset import BaseWrapperDataset


class ListDataset(BaseWrapperDataset):
    def __init__(self, dataset, sizes=None):
        super().__init__(dataset)
        self._sizes = sizes

    def __iter__(self):
        for x in self.dataset:
            yield x

    def collater(self, samples):
        return samples

    @property
    def sizes(self):
        return self._sizes

    def num_tokens(self, index):
        return self.sizes[index]

    def size(self, index):
        return self.sizes[index]

    def set_epoch(self, epoch):
        pass
