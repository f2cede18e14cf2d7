"""fairseq's language_modeling task: left-to-right LM on a binarized corpus (with --arch transformer_lm).

Each split is read like masked_lm's (dict.txt + <split>.bin/.idx, ':'-separated shards rotating per
epoch), cut into --tokens-per-sample blocks by --sample-break-mode, and served by MonolingualDataset:
the model reads the block shifted right by one and predicts the block itself (fairseq's "future"
target; --self-target / --past-target name the others, which transformer_lm refuses as fairseq does).
The default criterion, cross_entropy, averages over the target tokens.
--shorten-method truncate|random_crop shortens the sentences first (fairseq.data.shorten_dataset), as fairseq.
Not here: --output-dictionary-size (a truncated output vocabulary).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Optional

from omegaconf import II

from fairseq.data import Dictionary, TokenBlockDataset, checks, data_utils
from fairseq.data.monolingual_dataset import MonolingualDataset
from fairseq.data.shorten_dataset import maybe_shorten_dataset
from fairseq.dataclass import FairseqDataclass
from fairseq.tasks.base import FairseqTask, register_task
from fairseq.tasks.data_dirs import data_paths, load_data_dictionary
from fairseq.tasks.masked_lm import SAMPLE_BREAK_MODE_CHOICES, SHORTEN_METHOD_CHOICES

logger = logging.getLogger(__name__)


@dataclass
class LanguageModelingConfig(FairseqDataclass):
    """fairseq's language_modeling fields (LanguageModelingTask.add_args gives them their flags)."""

    data: Optional[str] = field(default=None)
    sample_break_mode: SAMPLE_BREAK_MODE_CHOICES = field(default="none")
    tokens_per_sample: int = field(default=1024)
    output_dictionary_size: int = field(default=-1)
    self_target: bool = field(default=False)
    future_target: bool = field(default=False)
    past_target: bool = field(default=False)
    add_bos_token: bool = field(default=False)
    max_target_positions: Optional[int] = field(default=None)
    shorten_method: SHORTEN_METHOD_CHOICES = field(default="none")
    shorten_data_split_list: str = field(default="")
    pad_to_fixed_length: Optional[bool] = field(default=False)
    pad_to_fixed_bsz: Optional[bool] = field(default=False)
    seed: int = II("common.seed")


@register_task("language_modeling", dataclass=LanguageModelingConfig)
class LanguageModelingTask(FairseqTask):
    @classmethod
    def add_args(cls, parser):
        g = parser.add_argument_group("task")
        add = g.add_argument
        add("data", help="fairseq binarized data directory (dict.txt + <split>.bin/.idx); ':'-separated shards")
        add("--sample-break-mode", default="none", choices=["none", "complete", "complete_doc", "eos"],
            help="how sentences are packed into blocks")
        add("--tokens-per-sample", default=1024, type=int, help="max tokens per sample")
        add("--output-dictionary-size", default=-1, type=int, help="only -1 (the whole dictionary) is supported")
        add("--self-target", action="store_true", help="predict the current token (not with transformer_lm)")
        add("--future-target", action="store_true", help="predict the next token (the default target)")
        add("--past-target", action="store_true", help="predict the previous token (not with transformer_lm)")
        add("--add-bos-token", action="store_true", help="prepend <s> to every sample")
        add("--max-target-positions", type=int, default=None, help="model positions (default: --tokens-per-sample)")
        add("--shorten-method", default="none", choices=["none", "truncate", "random_crop"],
            help="shorten sentences longer than --tokens-per-sample before cutting blocks")
        add("--shorten-data-split-list", default="", help="splits to shorten (all when empty)")
        add("--pad-to-fixed-length", action="store_true", help="pad every batch to --tokens-per-sample")
        add("--pad-to-fixed-bsz", action="store_true", help="pad every batch to --batch-size rows")

    def __init__(self, args, dictionary: Dictionary, targets=None):
        super().__init__(args)
        if int(getattr(args, "output_dictionary_size", -1)) != -1:
            raise ValueError("--output-dictionary-size is not supported; the output vocabulary is dict.txt's")
        self.data_paths = data_paths(args.data)
        self.dictionary = self.output_dictionary = dictionary
        self.targets = targets or ["future"]
        self.seed = int(getattr(args, "seed", 1))

    @classmethod
    def setup_task(cls, args, **kwargs):
        dictionary = load_data_dictionary(args)
        targets = [t for t in ("self", "future", "past") if getattr(args, f"{t}_target", False)]
        return cls(args, dictionary, targets)

    @property
    def source_dictionary(self) -> Dictionary:
        return self.dictionary

    @property
    def target_dictionary(self) -> Dictionary:
        return self.output_dictionary

    def has_sharded_data(self, split: str) -> bool:
        return len(self.data_paths) > 1

    def max_positions(self) -> int:
        return int(getattr(self.args, "max_target_positions", None) or self.args.tokens_per_sample)

    def build_model(self, args, from_checkpoint: bool = False):
        model = super().build_model(args, from_checkpoint)
        for target in self.targets:
            if target not in getattr(model, "supported_targets", {"future"}):
                raise ValueError(f"Unsupported language modeling target: {target}")
        return model

    def load_dataset(self, split: str, epoch: int = 1, combine: bool = False, **kwargs):
        data_path = self.data_paths[(epoch - 1) % len(self.data_paths)]
        split_path = os.path.join(data_path, split)
        dataset = data_utils.load_indexed_dataset(split_path, self.dictionary, combine=combine)
        if dataset is None:
            raise FileNotFoundError(f"dataset not found: {split_path}.bin/.idx (split {split!r} of {data_path})")
        for part in getattr(dataset, "datasets", [dataset]):  # valid, valid1, ... under combine
            checks.check_token_ids(part, len(self.dictionary), os.path.join(self.data_paths[0], "dict.txt"))
        dataset = maybe_shorten_dataset(dataset, split, self.args.shorten_data_split_list, self.args.shorten_method,
                                        int(self.args.tokens_per_sample), self.seed)
        mode = self.args.sample_break_mode
        blocks = TokenBlockDataset(dataset, dataset.sizes, int(self.args.tokens_per_sample), pad=self.dictionary.pad(),
                                   eos=self.dictionary.eos(), break_mode=mode, include_targets=True)
        checks.check_not_empty(split, split_path, len(dataset), len(blocks), mode)
        batch_rows = getattr(self.args, "batch_size_valid" if "valid" in split else "batch_size", None)
        self.datasets[split] = MonolingualDataset(
            blocks, blocks.sizes, self.dictionary, self.output_dictionary,
            add_eos_for_other_targets=mode is not None and mode != "none", shuffle=True, targets=self.targets,
            add_bos_token=bool(getattr(self.args, "add_bos_token", False)),
            fixed_pad_length=int(self.args.tokens_per_sample) if getattr(self.args, "pad_to_fixed_length", False)
            else None,
            pad_to_bsz=batch_rows if getattr(self.args, "pad_to_fixed_bsz", False) else None)
        return self.datasets[split]
