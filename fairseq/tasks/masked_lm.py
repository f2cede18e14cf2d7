"""The masked_lm task (FAIRSEQ_SPEC section 4): dictionary, datasets, batches, train/valid steps.

train_step does its own backward (fairseq semantics) through `optimizer.backward(loss)`, which
applies the fp16 loss scale when one is active. With --token-drop > 0 the step is delegated to
fairseq.sctd.train_step, and after every optimizer step the trainer calls after_update so the
token-importance table folds in the losses of that update.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from omegaconf import II

from fairseq import flops, sctd, token_drop
from fairseq.distributed import collectives
from fairseq.data import (
    Dictionary,
    IdDataset,
    MaskTokensDataset,
    NestedDictionaryDataset,
    NumelDataset,
    NumSamplesDataset,
    PrependTokenDataset,
    RightPadDataset,
    SortDataset,
    TokenBlockDataset,
    data_utils,
)
from fairseq.data import checks
from fairseq.data import encoders
from fairseq.data.bpe import GPT2BPE, word_begins
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.logging import metrics
from fairseq.tasks.base import FairseqTask, register_task
from fairseq.tasks.data_dirs import data_paths, load_data_dictionary

logger = logging.getLogger(__name__)


def describe_schedule(args, dropper) -> str:
    """One log line: the selector, the split, K of T, the full phases and the ideal FLOP ratio of the
    whole schedule (Hou's split with a constant K; the per-layer and ramped schedules are described)."""
    L, T = int(args.encoder_layers), int(args.tokens_per_sample)
    E, F = int(args.encoder_embed_dim), int(args.encoder_ffn_embed_dim)
    start, end = dropper.split
    if dropper.selector.per_layer:
        per = flops.layerwise_drop_step_ratio(L, T, E, F, dropper.keep_count(T), start, end)
        msg = (f"token dropping ({dropper.mode}): layers {start}-{end} each keep their own {dropper.keep_count(T)} "
               f"of {T} positions (ideal FLOP ratio of a dropping update {per:.3f})")
    else:
        per = flops.token_drop_step_ratio(L, T, E, F, dropper.p, dropper.split)
        msg = (f"token dropping ({dropper.mode}): layers {start}-{end} keep {dropper.keep_count(T)} of {T} "
               f"positions (ideal FLOP ratio of a dropping update {per:.3f})")
    if dropper.ramp_updates > 0:
        msg += f", growing linearly to {T} by update {dropper.ramp_updates}"
    if getattr(args, "seq_len_schedule", None):
        msg += " (K follows the block length of --seq-len-schedule)"
    msg += ", " + (f"ScTD every {dropper.interval} updates" if dropper.interval
                   else "no ScTD (vanilla token dropping)")
    phases = ([f"u < {dropper.warmup_updates}"] if dropper.warmup_updates else []) + (
        [f"u >= {dropper.total_updates - dropper.final_full_updates}"] if dropper.final_full_updates else [])
    msg += f", full model for updates {' and '.join(phases)}" if phases else ", no full-model phases"
    total = int(getattr(args, "max_update", 0) or 0) or int(getattr(args, "total_num_update", None) or 0)
    if total > 0 and not dropper.selector.per_layer and dropper.ramp_updates == 0:
        ratio = flops.schedule_ideal_ratio(L, T, E, F, dropper.p, dropper.interval, total, dropper.warmup_updates,
                                           dropper.final_full_updates, dropper.split, dropper.full_mlm_weight)
        msg += f"; ideal FLOP ratio of the {total}-update schedule {ratio:.3f}"
    return msg


def masked_lm_dataset(dataset, dictionary: Dictionary, mask_idx: int, seed: int = 1, mask_prob: float = 0.15,
                      leave_unmasked_prob: float = 0.1, random_token_prob: float = 0.1,
                      freq_weighted_replacement: bool = False, mask_whole_words=None, pad_to_multiple: int = 1):
    """fairseq's masked-LM batches over `dataset` (items already start with <s>), from the public wrappers.

    A batch is {id, net_input: {src_tokens, src_lengths}, target, nsentences, ntokens}; batches are
    built by length with ties in a permutation seeded by `seed` (SortDataset). pad_to_multiple pads
    src_tokens and target to a multiple of it (--required-seq-len-multiple).
    """
    src, tgt = MaskTokensDataset.apply_mask(
        dataset, dictionary, pad_idx=dictionary.pad(), mask_idx=mask_idx, seed=seed, mask_prob=mask_prob,
        leave_unmasked_prob=leave_unmasked_prob, random_token_prob=random_token_prob,
        freq_weighted_replacement=freq_weighted_replacement, mask_whole_words=mask_whole_words)
    shuffle = np.random.RandomState(seed).permutation(len(src))  # = fairseq's numpy_seed(seed) permutation
    pad = dictionary.pad()
    return SortDataset(
        NestedDictionaryDataset(
            {
                "id": IdDataset(),
                "net_input": {
                    "src_tokens": RightPadDataset(src, pad, pad_to_multiple=pad_to_multiple),
                    "src_lengths": NumelDataset(src, reduce=False),
                },
                "target": RightPadDataset(tgt, pad, pad_to_multiple=pad_to_multiple),
                "nsentences": NumSamplesDataset(),
                "ntokens": NumelDataset(src, reduce=True),
            },
            sizes=[src.sizes],
        ),
        sort_order=[shuffle, src.sizes],
    )


SAMPLE_BREAK_MODE_CHOICES = ChoiceEnum(["none", "complete", "complete_doc", "eos"])
SHORTEN_METHOD_CHOICES = ChoiceEnum(["none", "truncate", "random_crop"])


@dataclass
class MaskedLMConfig(FairseqDataclass):
    """fairseq's masked_lm fields (MaskedLMTask.add_args gives them their flags, with ours beside)."""

    data: str = field(default="", metadata={"help": "data directory; ':'-separated shards"})
    sample_break_mode: SAMPLE_BREAK_MODE_CHOICES = field(default="none")
    tokens_per_sample: int = field(default=1024, metadata={"help": "max tokens per sample"})
    mask_prob: float = field(default=0.15)
    leave_unmasked_prob: float = field(default=0.1)
    random_token_prob: float = field(default=0.1)
    freq_weighted_replacement: bool = field(default=False)
    mask_whole_words: bool = field(default=False)
    mask_multiple_length: int = field(default=1)
    mask_stdev: float = field(default=0.0)
    shorten_method: SHORTEN_METHOD_CHOICES = field(default="none")
    shorten_data_split_list: str = field(default="")
    seed: int = II("common.seed")
    include_target_tokens: bool = field(default=False)
    gpt2_encoder_json: Optional[str] = field(default=None)
    gpt2_vocab_bpe: Optional[str] = field(default=None)
    bpe_tokenizer_json: Optional[str] = field(default=None)


@register_task("masked_lm", dataclass=MaskedLMConfig)
class MaskedLMTask(FairseqTask):
    @classmethod
    def add_args(cls, parser):
        g = parser.add_argument_group("task")
        add = g.add_argument
        add("data", help="fairseq binarized data directory (dict.txt + <split>.bin/.idx); ':'-separated shards")
        add("--sample-break-mode", default="none", choices=["none", "complete", "complete_doc", "eos"],
            help="how sentences are packed into blocks")
        add("--tokens-per-sample", default=512, type=int, help="max tokens per sample (incl. <s>)")
        add("--seq-len-schedule", default=None, metavar="LEN:AT[,LEN:AT...]",
            help="train on blocks of LEN tokens for updates before AT (an update count, or a fraction of "
                 "--max-update such as 0.9), then at --tokens-per-sample (fairseq/seq_len_schedule.py)")
        add("--mask-prob", default=0.15, type=float, help="probability of masking a token")
        add("--leave-unmasked-prob", default=0.1, type=float, help="probability a masked token is unchanged")
        add("--random-token-prob", default=0.1, type=float, help="probability a masked token is random")
        add("--freq-weighted-replacement", action="store_true", help="random tokens drawn by frequency")
        add("--mask-whole-words", action="store_true", help="mask whole words (needs the GPT-2 BPE files)")
        add("--mask-multiple-length", default=1, type=int, help="only 1 is supported")
        add("--mask-stdev", default=0.0, type=float, help="only 0 is supported")
        add("--shorten-method", default="none", choices=["none", "truncate", "random_crop"],
            help="only none is supported")
        add("--shorten-data-split-list", default="", help="splits to shorten (only with a --shorten-method)")
        add("--include-target-tokens", action="store_true", help="no effect here (warns): data2vec only")
        add("--gpt2-encoder-json", default=None, help="GPT-2 encoder.json, for --mask-whole-words")
        add("--gpt2-vocab-bpe", default=None, help="GPT-2 vocab.bpe, for --mask-whole-words")
        add("--bpe-tokenizer-json", default=None,
            help="tokenizer.json, for --mask-whole-words (default: DATA/tokenizer.json if present)")
        token_drop.add_token_drop_args(parser)

    def __init__(self, cfg, dictionary: Dictionary):
        """cfg: the parsed arguments or a MaskedLMConfig (fairseq's constructor)."""
        super().__init__(cfg)
        args = cfg
        self.data_paths = data_paths(args.data)
        self.dictionary = dictionary
        self.mask_idx = dictionary.add_symbol("<mask>")
        self.token_dropper = None
        self.seed = int(getattr(args, "seed", 1))
        if int(getattr(args, "mask_multiple_length", 1)) != 1 or float(getattr(args, "mask_stdev", 0.0)) != 0.0:
            raise ValueError("--mask-multiple-length > 1 / --mask-stdev are not supported (span masking)")
        if getattr(args, "shorten_method", "none") != "none":
            raise ValueError(f"--shorten-method {args.shorten_method!r} is not supported; only none")

    @classmethod
    def setup_task(cls, args, **kwargs):
        dictionary = load_data_dictionary(args)
        return cls(args, dictionary)

    @property
    def source_dictionary(self) -> Dictionary:
        return self.dictionary

    @property
    def target_dictionary(self) -> Dictionary:
        return self.dictionary

    def has_sharded_data(self, split: str) -> bool:
        return len(self.data_paths) > 1

    def max_positions(self) -> int:
        return int(self.args.tokens_per_sample)

    def _whole_word_mask(self):
        if not getattr(self.args, "mask_whole_words", False):
            return None
        data_dir = self.data_paths[0]
        tok_json = self.args.bpe_tokenizer_json or os.path.join(data_dir, "tokenizer.json")
        chosen = getattr(self.args, "bpe", None)
        if chosen is not None and chosen != "gpt2":  # --bpe sentencepiece, ...: fairseq's get_whole_word_mask
            return word_begins(self.dictionary, encoders.build_bpe(self.args))
        if self.args.gpt2_encoder_json and self.args.gpt2_vocab_bpe:
            bpe = GPT2BPE(self.args.gpt2_encoder_json, self.args.gpt2_vocab_bpe)
        elif os.path.isfile(tok_json):
            bpe = GPT2BPE(tokenizer_json=tok_json)
        elif chosen == "gpt2":  # fairseq's default files: its cache, else a clear error
            bpe = encoders.build_bpe(self.args)
        else:
            raise FileNotFoundError(
                "--mask-whole-words needs the BPE: give --gpt2-encoder-json and --gpt2-vocab-bpe, or "
                f"--bpe-tokenizer-json (looked for {tok_json})")
        return word_begins(self.dictionary, bpe)

    def _load_dataset_split(self, split: str, epoch: int, combine: bool, tokens_per_sample: Optional[int] = None):
        """<s> + token blocks of `split` from the epoch's data shard (fairseq's method of this name), each at
        most tokens_per_sample long with <s> (default --tokens-per-sample; the trainer passes the length
        --seq-len-schedule gives)."""
        tokens_per_sample = int(tokens_per_sample or self.args.tokens_per_sample)
        data_path = self.data_paths[(epoch - 1) % len(self.data_paths)]
        split_path = os.path.join(data_path, split)
        dataset = data_utils.load_indexed_dataset(split_path, self.source_dictionary, combine=combine)
        if dataset is None:
            raise FileNotFoundError(f"dataset not found: {split_path}.bin/.idx (split {split!r} of {data_path})")
        for part in getattr(dataset, "datasets", [dataset]):  # valid, valid1, ... under combine
            checks.check_token_ids(part, len(self.dictionary), os.path.join(self.data_paths[0], "dict.txt"))
        blocks = TokenBlockDataset(dataset, dataset.sizes, tokens_per_sample - 1,  # room for <s>
                                   pad=self.dictionary.pad(), eos=self.dictionary.eos(),
                                   break_mode=self.args.sample_break_mode)
        logger.info(f"loaded {len(blocks)} blocks from: {split_path}"
                    + (f" (blocks of {tokens_per_sample} tokens)" if tokens_per_sample != self.args.tokens_per_sample
                       else ""))
        checks.check_not_empty(split, split_path, len(dataset), len(blocks), self.args.sample_break_mode)
        return PrependTokenDataset(blocks, self.source_dictionary.bos())

    def load_dataset(self, split: str, epoch: int = 1, combine: bool = False, tokens_per_sample: Optional[int] = None,
                     **kwargs):
        dataset = self._load_dataset_split(split, epoch, combine, tokens_per_sample)
        self.datasets[split] = masked_lm_dataset(
            dataset, self.dictionary, self.mask_idx, seed=self.seed, mask_prob=self.args.mask_prob,
            leave_unmasked_prob=self.args.leave_unmasked_prob, random_token_prob=self.args.random_token_prob,
            freq_weighted_replacement=bool(self.args.freq_weighted_replacement),
            mask_whole_words=self._whole_word_mask(),
            pad_to_multiple=int(getattr(self.args, "required_seq_len_multiple", 1)))
        return self.datasets[split]

    def build_model(self, args, from_checkpoint: bool = False):
        model = super().build_model(args, from_checkpoint)
        unused = token_drop.unused_flags(args)
        if unused and collectives.is_master():  # one warning per job, like fairseq.flag_audit's
            logger.warning(f"{', '.join(unused)}: no effect without --token-drop > 0")
        if float(getattr(args, "token_drop", 0.0) or 0.0) > 0:
            self.token_dropper = token_drop.TokenDropper(args, self.dictionary, int(args.encoder_layers))
            logger.info(describe_schedule(args, self.token_dropper))
        return model

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        if self.token_dropper is not None:
            return sctd.train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad)
        return super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad)

    def reduce_metrics(self, logging_outputs, criterion):
        """The criterion's values plus, on token-dropping runs, the ScTD keys (fairseq.sctd)."""
        out = super().reduce_metrics(logging_outputs, criterion)
        extra = sctd.reduce_metrics(logging_outputs)
        for key, value in extra.items():
            metrics.log_scalar(key, value)
        return {**(out or {}), **extra}

    def after_update(self, num_updates: int) -> None:
        if self.token_dropper is not None:
            self.token_dropper.importance.apply()

    def discard_update(self) -> None:
        """An fp16 overflow skipped the update: forget its per-token losses so they never reach the EMA."""
        if self.token_dropper is not None:
            self.token_dropper.importance.reset()

    def state_dict(self) -> dict:
        return {"token_dropper": self.token_dropper.state_dict()} if self.token_dropper is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.token_dropper is not None and state and "token_dropper" in state:
            self.token_dropper.load_state_dict(state["token_dropper"])
