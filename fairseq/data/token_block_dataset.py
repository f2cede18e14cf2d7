"""fairseq.data.TokenBlockDataset: a dataset of sentences re-cut into blocks of at most block_size tokens
(the break modes and the block offsets are computed by fairseq.data.token_blocks.build_blocks).

Item i is the LongTensor of block i. With include_targets it is (source, target, past_target) for
language modelling: target the block, source it shifted right by one (eos first at the start of the
stream), past_target shifted by two.
"""
from __future__ import annotations

import numpy as np
import torch

from fairseq.data.fairseq_dataset import FairseqDataset
from fairseq.data.token_blocks import build_blocks


class TokenBlockDataset(FairseqDataset):
    def __init__(self, dataset, sizes, block_size, pad, eos, break_mode=None, include_targets: bool = False,
                 document_sep_len: int = 1, use_plasma_view: bool = False, split_path=None, plasma_path=None):
        super().__init__()
        if use_plasma_view:
            raise ValueError("TokenBlockDataset: use_plasma_view (shared-memory plasma store) is not supported")
        self.dataset = dataset
        self.pad, self.eos = pad, eos
        self.break_mode = break_mode or "none"
        self.include_targets = include_targets
        sizes = np.asarray(sizes)
        if len(sizes) != len(dataset):
            raise ValueError(f"sizes has {len(sizes)} entries but the dataset has {len(dataset)} sentences")
        self.slice_indices, self.block_to_dataset_index = build_blocks(
            sizes, block_size, self.break_mode, document_sep_len
        )
        self._sizes = (self.slice_indices[:, 1] - self.slice_indices[:, 0]).astype(np.int64)
        # our MMapIndexedDataset reads a block's tokens in one slice of the memory map
        self._direct = hasattr(dataset, "read_span") and not include_targets

    @property
    def sizes(self) -> np.ndarray:
        return self._sizes

    def __len__(self) -> int:
        return len(self.slice_indices)

    def size(self, index: int) -> int:
        return int(self._sizes[index])

    def num_tokens(self, index: int) -> int:
        return int(self._sizes[index])

    def num_tokens_vec(self, indices) -> np.ndarray:
        return self._sizes[indices]

    def __getitem__(self, index: int):
        start_ds, offset, end_ds = (int(x) for x in self.block_to_dataset_index[index])
        length = int(self._sizes[index])
        if self._direct:
            return torch.from_numpy(self.dataset.read_span(start_ds, offset, length))
        buf = torch.cat([torch.as_tensor(self.dataset[j]).long() for j in range(start_ds, end_ds + 1)])
        s, e = offset, offset + length
        item = buf[s:e]
        if not self.include_targets:
            return item
        if s == 0:
            source = torch.cat([item.new([self.eos]), buf[0 : e - 1]])
            past_target = torch.cat([item.new([self.pad, self.eos]), buf[0 : e - 2]])
        else:
            source = buf[s - 1 : e - 1]
            past_target = torch.cat([item.new([self.eos]), buf[0 : e - 2]]) if s == 1 else buf[s - 2 : e - 2]
        return source, item, past_target

    @property
    def supports_prefetch(self) -> bool:
        return False

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
