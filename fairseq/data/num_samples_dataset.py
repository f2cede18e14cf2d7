"""fairseq.data.NumSamplesDataset: counts the items of a batch (the batch's "nsentences" field)."""
from fairseq.data.fairseq_dataset import FairseqDataset


class NumSamplesDataset(FairseqDataset):
    def __getitem__(self, index):
        return 1

    def __len__(self):
        return 0  # sized by the NestedDictionaryDataset it sits in

    def collater(self, samples):
        return sum(samples)
