"""fairseq.data.SortDataset: batches are built in np.lexsort(sort_order) order (the last key sorts
first; masked_lm uses [a seeded shuffle, sizes]: by size, ties in shuffled order)."""
import numpy as np

from fairseq.data.base_wrapper_dataset import BaseWrapperDataset


class SortDataset(BaseWrapperDataset):
    def __init__(self, dataset, sort_order):
        super().__init__(dataset)
        if not isinstance(sort_order, (list, tuple)):
            sort_order = [sort_order]
        self.sort_order = sort_order
        if any(len(so) != len(dataset) for so in sort_order):
            raise ValueError(f"SortDataset: every sort key needs {len(dataset)} entries, got "
                             f"{[len(so) for so in sort_order]}")

    def ordered_indices(self):
        return np.lexsort(self.sort_order)
