"""fairseq's dummy_masked_lm task: one fixed masked-LM batch over a made-up vocabulary (every 7th
position from the third masked, ~15%; targets only there), for measuring masked-LM training speed."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from omegaconf import II

from fairseq.benchmark.dummy_lm import dummy_batch, dummy_dictionary
from fairseq.dataclass import FairseqDataclass
from fairseq.tasks.base import FairseqTask, register_task


@dataclass
class DummyMaskedLMConfig(FairseqDataclass):
    dict_size: int = field(default=49996, metadata={"help": "number of made-up words"})
    dataset_size: int = field(default=100000, metadata={"help": "number of (identical) samples per split"})
    tokens_per_sample: int = field(default=512, metadata={"help": "max number of total tokens over all segments "
                                                                  "per sample for BERT dataset"})
    batch_size: Optional[int] = II("dataset.batch_size")
    max_tokens: Optional[int] = II("dataset.max_tokens")
    max_target_positions: int = II("task.tokens_per_sample")


@register_task("dummy_masked_lm", dataclass=DummyMaskedLMConfig)
class DummyMaskedLMTask(FairseqTask):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.dictionary = dummy_dictionary(cfg.dict_size, mask=True)
        self.mask_idx = self.dictionary.index("<mask>")
        pad = self.dictionary.pad()
        seq = torch.arange(cfg.tokens_per_sample) + pad + 1
        masked = torch.arange(2, cfg.tokens_per_sample, 7)
        self.dummy_src = seq.clone()
        self.dummy_src[masked] = self.mask_idx
        self.dummy_tgt = torch.full_like(seq, pad)
        self.dummy_tgt[masked] = seq[masked]

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
