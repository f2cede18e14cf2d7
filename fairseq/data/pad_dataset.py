"""fairseq.data.PadDataset / LeftPadDataset / RightPadDataset: batches 1-D token tensors into one padded
[B, T] tensor (data_utils.collate_tokens).

pad_to_multiple (not in fairseq's signature, default 1 = fairseq's behaviour) rounds T up, for
--required-seq-len-multiple.
"""
from fairseq.data.base_wrapper_dataset import BaseWrapperDataset
from fairseq.data.data_utils import collate_tokens


class PadDataset(BaseWrapperDataset):
    def __init__(self, dataset, pad_idx: int, left_pad: bool, pad_length=None, pad_to_multiple: int = 1):
        super().__init__(dataset)
        self.pad_idx = pad_idx
        self.left_pad = left_pad
        self.pad_length = pad_length
        self.pad_to_multiple = int(pad_to_multiple)

    def collater(self, samples):
        return collate_tokens(samples, self.pad_idx, left_pad=self.left_pad, pad_to_length=self.pad_length,
                              pad_to_multiple=self.pad_to_multiple)


class LeftPadDataset(PadDataset):
    def __init__(self, dataset, pad_idx: int, pad_to_multiple: int = 1):
        super().__init__(dataset, pad_idx, left_pad=True, pad_to_multiple=pad_to_multiple)


class RightPadDataset(PadDataset):
    def __init__(self, dataset, pad_idx: int, pad_to_multiple: int = 1):
        super().__init__(dataset, pad_idx, left_pad=False, pad_to_multiple=pad_to_multiple)
