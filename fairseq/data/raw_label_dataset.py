"""fairseq.data.RawLabelDataset: one number per item (e.g. regression targets); batches as a tensor."""
import torch

from fairseq.data.fairseq_dataset import FairseqDataset


class RawLabelDataset(FairseqDataset):
    def __init__(self, labels):
        super().__init__()
        self.labels = labels

    def __getitem__(self, index):
        return self.labels[index]

    def __len__(self):
        return len(self.labels)

    def collater(self, samples):
        return torch.tensor(samples)
