"""fairseq.data.shorten_dataset: --shorten-method for tasks whose samples may exceed the model's positions.

TruncateDataset keeps each item's first N tokens; RandomCropDataset keeps N consecutive tokens from a
start drawn under numpy_seed(seed, epoch, index) (so a crop is reproducible, and changes per epoch);
maybe_shorten_dataset applies either to the splits --shorten-data-split-list names (all when empty).
"""
import numpy as np

from fairseq.data import data_utils
from fairseq.data.base_wrapper_dataset import BaseWrapperDataset


class TruncateDataset(BaseWrapperDataset):
    def __init__(self, dataset, truncation_length):
        super().__init__(dataset)
        if truncation_length is None:
            raise ValueError("TruncateDataset needs a truncation length (--max-positions / --tokens-per-sample)")
        self.truncation_length = int(truncation_length)

    def __getitem__(self, index):
        return self.dataset[index][: self.truncation_length]

    @property
    def sizes(self):
        return np.minimum(self.dataset.sizes, self.truncation_length)

    def num_tokens(self, index):
        return min(self.dataset.num_tokens(index), self.truncation_length)

    def size(self, index):
        return min(self.dataset.size(index), self.truncation_length)


class RandomCropDataset(TruncateDataset):
    def __init__(self, dataset, truncation_length, seed=1):
        super().__init__(dataset, truncation_length)
        self.seed = seed
        self.epoch = 0

    @property
    def can_reuse_epoch_itr_across_epochs(self):
        return True  # only the crop changes with the epoch, not the sizes

    def set_epoch(self, epoch, **unused):
        super().set_epoch(epoch)
        self.epoch = epoch

    def __getitem__(self, index):
        with data_utils.numpy_seed(self.seed, self.epoch, index):
            item = self.dataset[index]
            excess = item.size(0) - self.truncation_length
            if excess > 0:
                start = np.random.randint(0, excess)
                item = item[start: start + self.truncation_length]
            return item


def maybe_shorten_dataset(dataset, split, shorten_data_split_list, shorten_method, tokens_per_sample, seed):
    """dataset, truncated or randomly cropped to tokens_per_sample when shorten_method asks for it on split."""
    splits = shorten_data_split_list or ""
    applies = split in splits.split(",") or len(splits) == 0
    if shorten_method == "truncate" and applies:
        return TruncateDataset(dataset, tokens_per_sample)
    if shorten_method == "random_crop" and applies:
        return RandomCropDataset(dataset, tokens_per_sample, seed)
    return dataset
