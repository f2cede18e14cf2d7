"""fairseq.data.OffsetTokensDataset: adds a constant to every token id (e.g. to turn label ids into
class indices)."""
from fairseq.data.base_wrapper_dataset import BaseWrapperDataset


class OffsetTokensDataset(BaseWrapperDataset):
    def __init__(self, dataset, offset: int):
        super().__init__(dataset)
        self.offset = offset

    def __getitem__(self, idx):
        return self.dataset[idx] + self.offset
