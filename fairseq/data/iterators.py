"""Sample ordering, size filtering, batching and the resumable epoch iterator (fairseq semantics).

Resuming mid-epoch must give exactly the batches an uninterrupted run would have seen, so the
batch list is frozen once, each epoch's order is a pure function of (seed + epoch), and the
position inside the epoch is the only other state.
"""
from __future__ import annotations

import logging
import math
from typing import List, Optional, Sequence

import numpy as np
import torch

logger = logging.getLogger(__name__)


def ordered_indices(sizes, seed: int) -> np.ndarray:
    """Indices sorted by size ascending, ties broken by a permutation drawn with numpy seed `seed`."""
    sizes = np.asarray(sizes)
    perm = np.random.RandomState(seed).permutation(len(sizes))
    return np.lexsort((perm, sizes))


def filter_by_size(indices, sizes, max_positions, raise_on_invalid: bool, split_name: str = ""):
    """Drop samples longer than max_positions; raise (fairseq's text) if raise_on_invalid."""
    indices = np.asarray(indices, dtype=np.int64)
    sizes = np.asarray(sizes)
    if max_positions is None:
        return indices, []
    too_long = sizes[indices] > max_positions
    ignored = indices[too_long].tolist()
    kept = indices[~too_long]
    if ignored:
        if raise_on_invalid:
            raise ValueError(
                f"Size of sample #{ignored[0]} is invalid (={int(sizes[ignored[0]])}) since "
                f"max_positions={max_positions}, skip this example with --skip-invalid-size-inputs-valid-test"
            )
        logger.warning(
            f"{len(ignored):,} samples have invalid sizes and will be skipped, "
            f"max_positions={max_positions}, first few sample ids={ignored[:10]}"
            + (f" (split {split_name})" if split_name else "")
        )
    return kept, ignored


def batch_by_size(
    indices, sizes, max_tokens=None, max_sentences=None, required_batch_size_multiple: int = 1
) -> List[np.ndarray]:
    """Split `indices` (in order) into batches as fairseq 0.12.2 does.

    A batch costs len(batch) * max size in it; it may not exceed max_tokens or max_sentences.
    While growing, a batch is committed only at sizes that are a multiple of
    required_batch_size_multiple (or below it); on overflow the uncommitted tail starts the next
    batch (and if the tail alone overflows max_tokens, all but the current sample is closed too).
    """
    indices = np.asarray(indices, dtype=np.int64)
    max_tokens = int(max_tokens) if max_tokens is not None else -1
    max_sentences = int(max_sentences) if max_sentences is not None else -1
    bsz_mult = int(required_batch_size_multiple)
    if bsz_mult < 1:
        raise ValueError(f"--required-batch-size-multiple must be >= 1, got {bsz_mult}")
    n = len(indices)
    if n == 0:
        return []
    ntok = np.asarray(sizes, dtype=np.int64)[indices]
    if max_tokens > 0 and int(ntok.max()) > max_tokens:
        raise ValueError(f"Sentences lengths should not exceed max_tokens={max_tokens}")
    ends = [0] * (n + 1)
    count = 0
    batch_start = 0
    tail_max = 0
    batch_max = 0
    for pos in range(n):
        t = int(ntok[pos])
        tail_max = max(tail_max, t)
        new_end = pos + 1
        new_max = max(batch_max, tail_max)
        new_sents = new_end - batch_start
        overflow = (max_sentences > 0 and new_sents > max_sentences) or (
            max_tokens > 0 and new_sents * new_max > max_tokens
        )
        size_ok = new_sents < bsz_mult or new_sents % bsz_mult == 0
        if overflow:
            tail_tokens = tail_max * (new_end - ends[count])
            if max_tokens > 0 and tail_tokens > max_tokens:
                count += 1
                ends[count] = pos
                tail_max = t
            batch_start = ends[count]
            count += 1
            new_max = tail_max
        if overflow or size_ok:
            ends[count] = new_end
            batch_max = new_max
            tail_max = 0
    if ends[count] != n:
        count += 1
    return [b for b in np.split(indices, ends[:count])]


class CountingIterator:
    """Iterator over the remaining batches of an epoch that knows its position `n`.

    num_workers = 0 builds each batch in this process when it is asked for (fairseq's 0). N > 0 builds
    them in N torch DataLoader worker processes that run ahead of the training loop (fairseq's
    --num-workers), so collation overlaps with compute. Batches are the same either way: the batch
    list is fixed and every sample's masking is seeded by (seed, epoch, index), never by global RNG;
    the loader gets its own generator so the main process's torch RNG (dropout) is not consumed.
    `n` counts batches handed out, so a checkpoint resumes exactly where training was.
    """

    def __init__(self, dataset, batches: Sequence, start: int = 0, num_workers: int = 0):
        self.dataset = dataset
        self.batches = batches  # all batches of this shard for the epoch
        self.n = start
        self.total = len(batches)
        self.num_workers = int(num_workers)
        self._loader = None

    def __len__(self) -> int:
        return self.total

    def __iter__(self):
        return self

    def has_next(self) -> bool:
        return self.n < self.total

    def __next__(self):
        if self.n >= self.total:
            raise StopIteration
        if self.num_workers > 0:
            if self._loader is None:
                self._loader = iter(self._worker_loader())
            sample = next(self._loader)
        else:
            sample = self.dataset.collater([self.dataset[int(i)] for i in self.batches[self.n]])
        self.n += 1
        return sample

    def _worker_loader(self):
        return torch.utils.data.DataLoader(
            self.dataset, batch_sampler=[b.tolist() for b in self.batches[self.n:self.total]],
            collate_fn=self.dataset.collater, num_workers=self.num_workers,
            generator=torch.Generator().manual_seed(0))

    def skip(self, k: int) -> "CountingIterator":
        self.n = min(self.n + k, self.total)
        self._loader = None  # workers restart from the new position
        return self

    def take(self, k: int) -> "CountingIterator":
        self.total = min(self.total, k)
        self._loader = None
        return self


class EpochBatchIterator:
    """Epoch-by-epoch iterator over fixed batches: shuffled with seed+epoch, sharded, resumable."""

    def __init__(self, dataset, batches, seed: int = 1, num_shards: int = 1, shard_id: int = 0, epoch: int = 1,
                 disable_shuffling: bool = False, num_workers: int = 0):
        if not 0 <= shard_id < num_shards:
            raise ValueError(f"shard_id {shard_id} must be in [0, {num_shards})")
        if epoch < 1:
            raise ValueError(f"epoch must be >= 1, got {epoch}")
        self.dataset = dataset
        self.frozen_batches = tuple(np.asarray(b, dtype=np.int64) for b in batches)
        self.seed = seed
        self.num_shards = num_shards
        self.shard_id = shard_id
        self.epoch = epoch
        self.shuffle = True
        self.disable_shuffling = disable_shuffling
        self.num_workers = num_workers
        self._cur_epoch_itr: Optional[CountingIterator] = None
        self._next_epoch_itr: Optional[CountingIterator] = None

    def __len__(self) -> int:
        return int(math.ceil(len(self.frozen_batches) / float(self.num_shards)))

    @property
    def next_epoch_idx(self) -> int:
        if self._next_epoch_itr is not None:
            return self.epoch
        if self._cur_epoch_itr is not None and self.end_of_epoch():
            return self.epoch + 1
        return self.epoch

    @property
    def first_batch(self):
        if len(self.frozen_batches) == 0:
            return {}
        return self.dataset.collater([self.dataset[int(i)] for i in self.frozen_batches[0]])

    def epoch_batches(self, epoch: int, shuffle: bool) -> List[np.ndarray]:
        """This shard's batches for `epoch`, in order; shorter shards end with empty batches."""
        batches = list(self.frozen_batches)
        if shuffle and not self.disable_shuffling:
            np.random.RandomState(self.seed + epoch).shuffle(batches)
        shard = batches[self.shard_id :: self.num_shards]
        shard += [np.zeros(0, dtype=np.int64)] * (len(self) - len(shard))
        return shard

    def next_epoch_itr(self, shuffle: bool = True, set_dataset_epoch: bool = True, **_ignored) -> CountingIterator:
        if self.disable_shuffling:
            shuffle = False
        self.epoch = self.next_epoch_idx
        if set_dataset_epoch and hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(self.epoch)
        if self._next_epoch_itr is not None:
            self._cur_epoch_itr, self._next_epoch_itr = self._next_epoch_itr, None
        else:
            self._cur_epoch_itr = CountingIterator(self.dataset, self.epoch_batches(self.epoch, shuffle),
                                                   num_workers=self.num_workers)
        self.shuffle = shuffle
        return self._cur_epoch_itr

    def end_of_epoch(self) -> bool:
        return self._cur_epoch_itr is not None and not self._cur_epoch_itr.has_next()

    @property
    def iterations_in_epoch(self) -> int:
        if self._cur_epoch_itr is not None:
            return self._cur_epoch_itr.n
        if self._next_epoch_itr is not None:
            return self._next_epoch_itr.n
        return 0

    def state_dict(self) -> dict:
        if self.end_of_epoch():
            epoch, itr = self.epoch + 1, 0
        else:
            epoch, itr = self.epoch, self.iterations_in_epoch
        return {"version": 2, "epoch": epoch, "iterations_in_epoch": itr, "shuffle": self.shuffle}

    def load_state_dict(self, state_dict: dict) -> None:
        self.epoch = int(state_dict["epoch"])
        pos = int(state_dict.get("iterations_in_epoch", 0))
        shuffle = bool(state_dict.get("shuffle", True))
        self._cur_epoch_itr = None
        if pos > 0:
            batches = self.epoch_batches(self.epoch, shuffle)
            if pos >= len(batches):
                raise RuntimeError(
                    f"Cannot resume training: the checkpoint is at batch {pos} of epoch {self.epoch} but an "
                    f"epoch has only {len(batches)} batches (dataloader mismatch); relaunch with --reset-dataloader"
                )
            self._next_epoch_itr = CountingIterator(self.dataset, batches, start=pos, num_workers=self.num_workers)
            self.shuffle = shuffle
        else:
            self._next_epoch_itr = None
