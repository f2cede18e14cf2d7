"""fairseq.data.iterators: the epoch iterator the trainer consumes, with fairseq 0.12.2's classes.

Resuming mid-epoch must give exactly the batches an uninterrupted run would have seen, so the batch
list is frozen once, each epoch's order is a pure function of (seed + epoch), and the position inside
the epoch (`iterations_in_epoch`) is the only other state. Batches are built by a torch DataLoader
over the remaining batches of the epoch: in this process for num_workers = 0, in N worker processes
that run ahead of training for --num-workers N (same batches either way: every sample's masking is
seeded by (seed, epoch, index), never by global RNG). The loader gets its own generator, so building
it does not consume the main process's torch RNG (dropout).
"""
from __future__ import annotations

import itertools
import logging
import math
import queue
import threading
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch

from fairseq.data import worker_signals

logger = logging.getLogger(__name__)

_END = object()  # end-of-stream marker of BufferedIterator's queue


class CountingIterator:
    """Wraps an iterable and counts the items taken (`n`); `total` is where it stops.

    start: the count of items already consumed before `iterable` (default: iterable.n or 0);
    total: start + len(iterable) by default. An iterable shorter than `total` is an IndexError.
    """

    def __init__(self, iterable, start: Optional[int] = None, total: Optional[int] = None):
        self._itr = iter(iterable)
        self.n = start or getattr(iterable, "n", 0)
        self.total = total if total is not None else self.n + len(iterable)

    def __len__(self) -> int:
        return self.total

    def __iter__(self):
        return self

    def __next__(self):
        if not self.has_next():
            raise StopIteration
        try:
            x = next(self._itr)
        except StopIteration:
            raise IndexError(f"Iterator expected to have length {self.total}, but exhausted at position {self.n}.")
        self.n += 1
        return x

    def has_next(self) -> bool:
        return self.n < self.total

    def skip(self, n: int) -> "CountingIterator":
        """Consume the next n items."""
        for _ in range(n):
            next(self)
        return self

    def take(self, n: int) -> None:
        """Stop after n items in all (counting those already consumed); tells the wrapped iterable too."""
        self.total = min(self.total, n)
        remaining = max(n - self.n, 0)
        if hasattr(self._itr, "take"):
            self._itr.take(remaining)
        else:
            self._itr = itertools.islice(self._itr, remaining)


class EpochBatchIterating:
    """What the trainer asks of an epoch iterator (fairseq's interface)."""

    def __len__(self) -> int:
        raise NotImplementedError

    @property
    def next_epoch_idx(self) -> int:
        raise NotImplementedError

    def next_epoch_itr(self, shuffle: bool = True, fix_batches_to_gpus: bool = False,
                       set_dataset_epoch: bool = True) -> CountingIterator:
        raise NotImplementedError

    def end_of_epoch(self) -> bool:
        raise NotImplementedError

    @property
    def iterations_in_epoch(self) -> int:
        raise NotImplementedError

    def state_dict(self) -> dict:
        raise NotImplementedError

    def load_state_dict(self, state_dict: dict) -> None:
        raise NotImplementedError

    @property
    def first_batch(self):
        return "DUMMY"


class EpochBatchIterator(EpochBatchIterating):
    """Batches of `dataset` epoch by epoch: shuffled with seed + epoch, sharded, resumable.

    batch_sampler: the batches (lists of indices), or a function (dataset, epoch) -> batches that is
    asked again each new epoch. skip_remainder_batch drops each epoch's last batch (fairseq: for
    update_freq > 1 so that no update sees a partial group). buffer_size > 0 prefetches that many
    batches in a background thread.
    """

    def __init__(self, dataset, collate_fn: Callable, batch_sampler: Union[Sequence, Callable], seed: int = 1,
                 num_shards: int = 1, shard_id: int = 0, num_workers: int = 0, epoch: int = 1,
                 buffer_size: int = 0, timeout: int = 0, disable_shuffling: bool = False,
                 skip_remainder_batch: bool = False, grouped_shuffling: bool = False,
                 reuse_dataloader: bool = False, persistent_workers: bool = False):
        if not isinstance(dataset, torch.utils.data.Dataset) and not hasattr(dataset, "__getitem__"):
            raise TypeError(f"EpochBatchIterator: dataset must be indexable, got {type(dataset).__name__}")
        if not 0 <= shard_id < num_shards:
            raise ValueError(f"shard_id {shard_id} must be in [0, {num_shards})")
        if epoch < 1:
            raise ValueError(f"epoch must be >= 1, got {epoch}")
        if grouped_shuffling:
            raise ValueError("--grouped-shuffling is not supported")
        self.dataset = dataset
        self.collate_fn = collate_fn
        self.batch_sampler = batch_sampler
        self._frozen_batches = None if callable(batch_sampler) else tuple(
            np.asarray(b, dtype=np.int64) for b in batch_sampler)
        self.seed = seed
        self.num_shards = num_shards
        self.shard_id = shard_id
        self.num_workers = int(num_workers)
        self.buffer_size = min(int(buffer_size), 20)
        self.timeout = timeout
        self.disable_shuffling = disable_shuffling
        self.skip_remainder_batch = skip_remainder_batch
        self.persistent_workers = persistent_workers and self.num_workers > 0
        self.epoch = max(epoch, 1)
        self.shuffle = not disable_shuffling
        self._cur_epoch_itr: Optional[CountingIterator] = None
        self._next_epoch_itr: Optional[CountingIterator] = None

    @property
    def frozen_batches(self):
        if self._frozen_batches is None:
            self._frozen_batches = tuple(np.asarray(b, dtype=np.int64)
                                         for b in self.batch_sampler(self.dataset, self.epoch))
        return self._frozen_batches

    @property
    def first_batch(self):
        if len(self.frozen_batches) == 0:
            return {}
        return self.collate_fn([self.dataset[int(i)] for i in self.frozen_batches[0]])

    def __len__(self) -> int:
        return int(math.ceil(len(self.frozen_batches) / float(self.num_shards)))

    @property
    def n(self) -> int:
        return self.iterations_in_epoch

    @property
    def next_epoch_idx(self) -> int:
        if self._next_epoch_itr is not None:
            return self.epoch
        if self._cur_epoch_itr is not None and self.end_of_epoch():
            return self.epoch + 1
        return self.epoch

    def next_epoch_itr(self, shuffle: bool = True, fix_batches_to_gpus: bool = False,
                       set_dataset_epoch: bool = True) -> CountingIterator:
        """The iterator of the next epoch (or the resumed one after load_state_dict); sets the dataset's
        epoch first unless set_dataset_epoch is False (validation keeps epoch-1 masks)."""
        if fix_batches_to_gpus:
            raise ValueError("fix_batches_to_gpus is not supported")
        if self.disable_shuffling:
            shuffle = False
        prev_epoch = self.epoch
        self.epoch = self.next_epoch_idx
        if set_dataset_epoch and hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(self.epoch)
        if self._next_epoch_itr is not None:
            self._cur_epoch_itr, self._next_epoch_itr = self._next_epoch_itr, None
        else:
            if callable(self.batch_sampler) and prev_epoch != self.epoch:
                self._frozen_batches = None  # ask the sampler again for the new epoch
            self._cur_epoch_itr = self._get_iterator_for_epoch(self.epoch, shuffle)
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
        self._cur_epoch_itr = None
        if pos > 0:
            shuffle = bool(state_dict.get("shuffle", True))
            self._next_epoch_itr = self._get_iterator_for_epoch(self.epoch, shuffle, offset=pos)
            if self._next_epoch_itr is None:
                if int(state_dict.get("version", 1)) == 1:
                    self.epoch += 1  # fairseq's legacy state: the epoch had finished
                else:
                    raise RuntimeError(
                        f"Cannot resume training: the checkpoint is at batch {pos} of epoch {self.epoch} but "
                        f"an epoch has only {len(self)} batches (dataloader mismatch); relaunch with "
                        "--reset-dataloader")
            self.shuffle = shuffle
        else:
            self._next_epoch_itr = None

    def epoch_batches(self, epoch: int, shuffle: bool):
        """This shard's batches for `epoch`, in order; shorter shards end with empty batches."""
        batches = list(self.frozen_batches)
        if shuffle and not self.disable_shuffling:
            np.random.RandomState(self.seed + epoch).shuffle(batches)  # = fairseq's numpy_seed(seed + epoch)
        return list(ShardedIterator(batches, self.num_shards, self.shard_id, fill_value=np.zeros(0, np.int64)))

    def _get_iterator_for_epoch(self, epoch: int, shuffle: bool, offset: int = 0) -> Optional[CountingIterator]:
        batches = self.epoch_batches(epoch, shuffle)
        if offset > 0 and offset >= len(batches):
            return None
        loader = _Loader(
            self.dataset, collate_fn=self.collate_fn, batch_sampler=[b.tolist() for b in batches[offset:]],
            num_workers=self.num_workers, timeout=self.timeout, persistent_workers=self.persistent_workers,
            generator=torch.Generator().manual_seed(0),
            worker_init_fn=worker_signals.worker_init if self.num_workers > 0 else None)
        itr = BufferedIterator(self.buffer_size, loader) if self.buffer_size > 0 else loader
        itr = CountingIterator(itr, start=offset)
        if self.skip_remainder_batch:
            itr.take(len(batches) - 1)  # fairseq drops the last batch whether it is full or not
            logger.info(f"skip final residual batch, total_num_itrs = {len(batches) - 1}")
        return itr


class _Loader(torch.utils.data.DataLoader):
    """A DataLoader whose worker processes obey their parent only (fairseq/data/worker_signals.py): a
    SIGTERM or SIGINT sent to the whole job reaches the trainer, which stops as it would alone."""

    def __iter__(self):
        with worker_signals.held():  # the workers are forked in here
            return super().__iter__()


class GroupedIterator(CountingIterator):
    """Items of `iterable` in lists of chunk_size (the last one shorter, or dropped with
    skip_remainder_batch): the update_freq groups of one update."""

    def __init__(self, iterable, chunk_size: int, skip_remainder_batch: bool = False):
        if skip_remainder_batch:
            total = int(math.floor(len(iterable) / float(chunk_size)))
        else:
            total = int(math.ceil(len(iterable) / float(chunk_size)))
        start = int(math.ceil(getattr(iterable, "n", 0) / float(chunk_size)))
        super().__init__(_chunks(iterable, chunk_size, skip_remainder_batch), start=start, total=total)
        self.chunk_size = chunk_size
        if skip_remainder_batch:
            self.take(total)
            iterable.take(total * chunk_size)  # the source stops with the last full group


def _chunks(itr, chunk_size: int, skip_remainder_batch: bool):
    chunk = []
    for x in itr:
        chunk.append(x)
        if len(chunk) == chunk_size:
            yield chunk
            chunk = []
    if not skip_remainder_batch and len(chunk) > 0:
        yield chunk


class ShardedIterator(CountingIterator):
    """Every num_shards-th item starting at shard_id; shorter shards are padded with fill_value so all
    shards have ceil(len / num_shards) items."""

    def __init__(self, iterable, num_shards: int, shard_id: int, fill_value=None, skip_remainder_batch=None):
        if shard_id < 0 or shard_id >= num_shards:
            raise ValueError(f"shard_id {shard_id} must be in [0, {num_shards})")
        sharded_len = int(math.ceil(len(iterable) / float(num_shards)))
        itr = map(lambda pair: pair[1], itertools.zip_longest(
            range(sharded_len), itertools.islice(iterable, shard_id, len(iterable), num_shards),
            fillvalue=fill_value))
        super().__init__(itr, start=int(math.ceil(getattr(iterable, "n", 0) / float(num_shards))),
                         total=sharded_len)


class BufferedIterator:
    """Prefetches up to `size` items of `iterable` in a background thread (overlaps batch building
    with training). len() is the number of items it yields in all; take(n) lowers it to n."""

    def __init__(self, size: int, iterable):
        self._queue: "queue.Queue" = queue.Queue(size)
        self._iterable = iterable
        self._consumer: Optional[threading.Thread] = None
        self.total = len(iterable)
        self.count = 0

    def _fill(self) -> None:
        try:
            for item in self._iterable:
                self._queue.put(item)
        except Exception as e:  # handed to the consumer, which raises it
            self._queue.put(e)
        self._queue.put(_END)

    def __iter__(self):
        return self

    def __len__(self) -> int:
        return self.total

    def take(self, n: int) -> None:
        self.total = min(self.total, n)
        if hasattr(self._iterable, "take"):
            self._iterable.take(n)

    def __next__(self):
        if self.count >= self.total:
            raise StopIteration
        if self._consumer is None:
            self._consumer = threading.Thread(target=self._fill, daemon=True)
            self._consumer.start()
        item = self._queue.get(True)
        if isinstance(item, Exception):
            raise item
        if item is _END:
            raise StopIteration
        self.count += 1
        return item
