"""fairseq.data.NestedDictionaryDataset: a batch as a (nested) dict, one dataset per field.

defn maps field names to datasets (or to dicts / lists of them, which nest); item i is every
field's item i, and the batch is every field's own collater applied to its column. `sizes`
(one array, or several) are the sizes batching and filtering read.
"""
from collections import OrderedDict

import numpy as np
import torch
from torch.utils.data.dataloader import default_collate

from fairseq.data.fairseq_dataset import FairseqDataset


def _flatten(defn, prefix=None):
    out = OrderedDict()
    if isinstance(defn, dict):
        items = defn.items()
    elif isinstance(defn, list):
        items = ((str(i), v) for i, v in enumerate(defn))
    else:
        return OrderedDict([(prefix, defn)])
    for k, v in items:
        if "." in str(k):
            raise ValueError(f"NestedDictionaryDataset: key {k!r} may not contain '.'")
        out.update(_flatten(v, k if prefix is None else f"{prefix}.{k}"))
    return out


def _unflatten(flat):
    out = OrderedDict()
    for key, value in flat.items():
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, OrderedDict())
        node[parts[-1]] = value
    return out


class NestedDictionaryDataset(FairseqDataset):
    def __init__(self, defn, sizes=None):
        super().__init__()
        self.defn = _flatten(defn)
        self.sizes = [sizes] if not isinstance(sizes, (list, tuple)) else sizes
        first = None
        for v in self.defn.values():
            if not isinstance(v, (FairseqDataset, torch.utils.data.Dataset)):
                raise ValueError(f"NestedDictionaryDataset: expected datasets, got {type(v).__name__}")
            if first is None or len(first) == 0:  # the length comes from the first sized dataset
                first = v
            if len(v) > 0 and len(v) != len(first):
                raise ValueError("NestedDictionaryDataset: the datasets have different lengths")
        self._len = len(first)

    def __getitem__(self, index):
        return OrderedDict((k, ds[index]) for k, ds in self.defn.items())

    def __len__(self):
        return self._len

    def collater(self, samples):
        if len(samples) == 0:
            return {}
        sample = OrderedDict()
        for k, ds in self.defn.items():
            column = [s[k] for s in samples]
            sample[k] = ds.collater(column) if hasattr(ds, "collater") else default_collate(column)
        return _unflatten(sample)

    def num_tokens(self, index):
        return max(s[index] for s in self.sizes)

    def num_tokens_vec(self, indices):
        """num_tokens of many indices at once (not in fairseq; the same numbers, without a python loop)."""
        return np.max(np.stack([np.asarray(s)[indices] for s in self.sizes]), axis=0)

    def filter_indices_by_size(self, indices, max_sizes):
        if len(self.sizes) == 1 and isinstance(max_sizes, (int, float)):  # one size per item: vectorized
            indices = np.asarray(indices, dtype=np.int64)
            too_long = np.asarray(self.sizes[0])[indices] > max_sizes
            return indices[~too_long], indices[too_long].tolist()
        return super().filter_indices_by_size(indices, max_sizes)

    def size(self, index):
        if len(self.sizes) == 1:
            return self.sizes[0][index]
        return tuple(s[index] for s in self.sizes)

    @property
    def supports_prefetch(self):
        return any(getattr(ds, "supports_prefetch", False) for ds in self.defn.values())

    def prefetch(self, indices):
        for ds in self.defn.values():
            if getattr(ds, "supports_prefetch", False):
                ds.prefetch(indices)

    @property
    def can_reuse_epoch_itr_across_epochs(self):
        return all(getattr(ds, "can_reuse_epoch_itr_across_epochs", False) for ds in self.defn.values())

    def set_epoch(self, epoch):
        super().set_epoch(epoch)
        for ds in self.defn.values():
            if hasattr(ds, "set_epoch"):
                ds.set_epoch(epoch)
