"""fairseq's dummy_lm task: a made-up vocabulary of dict_size words and one fixed language-model batch
(tokens pad+1 .. pad+T predicting the next one), --batch-size rows (or --max-tokens // T), repeated
dataset_size times: training speed without reading data."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional

import torch
from omegaconf import II

from fairseq.benchmark.dummy_dataset import DummyDataset
from fairseq.data import Dictionary
from fairseq.dataclass import FairseqDataclass
from fairseq.tasks.base import FairseqTask, register_task

logger = logging.getLogger(__name__)


@dataclass
class DummyLMConfig(FairseqDataclass):
    dict_size: int = field(default=49996, metadata={"help": "number of made-up words"})
    dataset_size: int = field(default=100000, metadata={"help": "number of (identical) samples per split"})
    tokens_per_sample: int = field(default=512, metadata={"help": "max sequence length"})
    add_bos_token: bool = False
    batch_size: Optional[int] = II("dataset.batch_size")
    max_tokens: Optional[int] = II("dataset.max_tokens")
    max_target_positions: int = II("task.tokens_per_sample")


def dummy_dictionary(size: int, mask: bool = False) -> Dictionary:
    d = Dictionary()
    for i in range(size):
        d.add_symbol(f"word{i}")
    if mask:
        d.add_symbol("<mask>")
    d.pad_to_multiple_(8)  # as fairseq: a vocabulary divisible by 8 is often faster
    logger.info(f"dictionary: {len(d)} types")
    return d


def dummy_batch(cfg, src: torch.Tensor, tgt: torch.Tensor) -> DummyDataset:
    """The fixed batch of `src`/`tgt` rows, sized by --batch-size or --max-tokens."""
    bsz = cfg.batch_size if cfg.batch_size is not None else max(1, cfg.max_tokens // cfg.tokens_per_sample)
    batch = {"id": 1,
             "net_input": {"src_tokens": torch.stack([src] * bsz),
                           "src_lengths": torch.full((bsz,), cfg.tokens_per_sample, dtype=torch.long)},
             "target": torch.stack([tgt] * bsz), "nsentences": bsz, "ntokens": bsz * cfg.tokens_per_sample}
    return DummyDataset(batch, num_items=cfg.dataset_size, item_size=cfg.tokens_per_sample)


@register_task("dummy_lm", dataclass=DummyLMConfig)
class DummyLMTask(FairseqTask):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.dictionary = dummy_dictionary(cfg.dict_size)
        seq = torch.arange(cfg.tokens_per_sample + 1) + self.dictionary.pad() + 1
        self.dummy_src, self.dummy_tgt = seq[:-1], seq[1:]

    def load_dataset(self, split, epoch=1, combine=False, **kwargs):
        self.datasets[split] = dummy_batch(self.cfg, self.dummy_src, self.dummy_tgt)
        return self.datasets[split]

    def max_positions(self):
        return self.cfg.tokens_per_sample

    @property
    def source_dictionary(self):
        return self.dictionary

    @property
    def target_dictionary(self):
        return self.dictionary
