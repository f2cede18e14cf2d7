"""fairseq.data.IdDataset: each item is its own index (the batch's "id" field)."""
import torch

from fairseq.data.fairseq_dataset import FairseqDataset


class IdDataset(FairseqDataset):
    def __getitem__(self, index):
        return index

    def __len__(self):
        return 0  # sized by the NestedDictionaryDataset it sits in

    def collater(self, samples):
        return torch.tensor(samples)
