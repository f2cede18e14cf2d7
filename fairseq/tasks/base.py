"""What every task shares: datasets by split, the batch iterator, and the plain train/valid step; the
--task table (fairseq's register_task) and the base classes FairseqTask / LegacyFairseqTask.

train_step does its own backward (fairseq semantics) through `optimizer.backward(loss)`, which applies
the fp16 loss scale when one is active, under the autocast the trainer configured. Tasks override
`ordered_indices` (by default the dataset's own: masked_lm's SortDataset sorts by length, sentence_prediction
keeps a seeded permutation) and the
hooks the trainer calls once per update (`after_update`, `discard_update`) when they keep state.

A task is constructed as fairseq's: `cls.setup_task(cfg)` -> `cls(cfg, ...)`; cfg is the parsed
arguments (or a config dataclass), and `task.cfg` / `task.args` both name it. reduce_metrics is
fairseq's (it logs through fairseq.logging.metrics); `logged_metrics(task, criterion, logs)` runs it in a
fresh aggregation and returns every value logged, so a plugin's own log_scalar calls reach the logs.
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from fairseq import models, registry
from fairseq.criterions import build_criterion
from fairseq.data import data_utils, iterators
from fairseq.dataclass.flags import add_registered_args
from fairseq.logging import metrics
from fairseq.optim.fairseq_optimizer import backward

TASK_REGISTRY = registry.setup_registry("task").classes
TASK_DATACLASS_REGISTRY = registry.REGISTRIES["task"].dataclasses


def register_task(name: str, dataclass=None):
    """Class decorator: `--task name` builds this class (a FairseqTask)."""
    return registry.REGISTRIES["task"].register(name, dataclass)


class FairseqTask:
    datasets: dict

    def __init__(self, cfg, **kwargs):
        self.cfg = cfg
        self.args = cfg
        self.datasets = {}

    @classmethod
    def add_args(cls, parser):
        """Flags from the dataclass the task was registered with (a task may override this)."""
        add_registered_args(cls, parser, "task")

    @classmethod
    def setup_task(cls, cfg, **kwargs):
        return cls(cfg, **kwargs)

    def build_model(self, cfg, from_checkpoint: bool = False):
        return models.build_model(cfg, self, from_checkpoint)

    def reduce_metrics(self, logging_outputs, criterion):
        """fairseq's: the criterion's reduce_metrics (which logs); ours also returns its dict."""
        return type(criterion).reduce_metrics(logging_outputs)

    def max_positions(self):
        return None

    @property
    def source_dictionary(self):
        raise NotImplementedError

    @property
    def target_dictionary(self):
        raise NotImplementedError

    def dataset(self, split: str):
        if split not in self.datasets:
            raise KeyError(f"split {split!r} is not loaded; call load_dataset first")
        return self.datasets[split]

    def has_sharded_data(self, split: str) -> bool:
        """True when `split` rotates over ':'-separated data shards, one per epoch (fairseq's name)."""
        return False

    def ordered_indices(self, dataset, seed: int) -> np.ndarray:
        """The dataset's own batching order (fairseq: under numpy_seed(seed), for datasets that draw it)."""
        with data_utils.numpy_seed(seed):
            return dataset.ordered_indices()

    def get_batch_iterator(self, dataset, max_tokens=None, max_sentences=None, max_positions=None,
                           ignore_invalid_inputs=False, required_batch_size_multiple=1, seed=1,
                           num_shards=1, shard_id=0, epoch=1, split_name="", num_workers=0):
        """Order, drop/raise on too-long samples, batch, and wrap in a resumable epoch iterator.

        Like fairseq, the dataset's epoch is set to `epoch` here, so validation (built with epoch=1
        and iterated without set_dataset_epoch) always sees the same masks.
        """
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        indices = self.ordered_indices(dataset, seed)
        indices, ignored = dataset.filter_indices_by_size(indices, max_positions)
        data_utils.check_ignored_sizes(ignored, dataset.size, max_positions,
                                       raise_on_invalid=not ignore_invalid_inputs, split_name=split_name)
        batches = dataset.batch_by_size(indices, max_tokens=max_tokens, max_sentences=max_sentences,
                                        required_batch_size_multiple=required_batch_size_multiple)
        return iterators.EpochBatchIterator(dataset=dataset, collate_fn=dataset.collater, batch_sampler=batches,
                                            seed=seed, num_shards=num_shards, shard_id=shard_id, epoch=epoch,
                                            num_workers=num_workers)

    def build_criterion(self, args):
        return build_criterion(args, self)

    def autocast_context(self, optimizer=None):
        """bf16/fp16 autocast as the trainer configured it (the optimizer wrapper carries the dtype)."""
        dtype = getattr(optimizer, "autocast_dtype", None)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=optimizer.device_type, dtype=dtype)

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        model.train()
        with self.autocast_context(optimizer):
            loss, sample_size, log = criterion(model, sample)
        if ignore_grad:
            loss = loss * 0
        backward(optimizer, loss)
        return loss, sample_size, log

    def valid_step(self, sample, model, criterion):
        model.eval()
        with torch.no_grad():
            return criterion(model, sample)

    def after_update(self, num_updates: int) -> None:
        """Called by the trainer after every optimizer step."""

    def discard_update(self) -> None:
        """Called by the trainer when an fp16 overflow skipped the update."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class LegacyFairseqTask(FairseqTask):
    """fairseq's base for tasks configured by an argparse Namespace (`add_args` + `setup_task(args)`)."""

    def __init__(self, args):
        super().__init__(args)

    @classmethod
    def setup_task(cls, args, **kwargs):
        return cls(args, **kwargs)


registry.REGISTRIES["task"].base_class = FairseqTask


def logged_metrics(task, criterion, logging_outputs) -> dict:
    """Every value task.reduce_metrics logs for `logging_outputs`: the values it returns (exact, in their
    order) first, then any other value logged through fairseq.logging.metrics (a plugin's own keys)."""
    with metrics.aggregate(new_root=True) as agg:
        returned = task.reduce_metrics(logging_outputs, criterion)
        logged = dict(agg.get_smoothed_values())
    returned = returned if isinstance(returned, dict) else {}
    return {**returned, **{k: v for k, v in logged.items() if k not in returned}}
