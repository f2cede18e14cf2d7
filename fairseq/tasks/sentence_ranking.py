"""The sentence_ranking task (fairseq's; RACE in examples/roberta/README.race.md): pick one of
--num-classes candidates for each sample.

Data layout, as examples/roberta/preprocess_RACE.sh writes it:
    DATA/input0/{dict.txt, <split>.bin/.idx}     the shared context (a passage)
    DATA/input1 .. input<N>/...                  candidate i (question + answer option i)
    DATA/label/<split>.label                     the right candidate's index, one integer per line
                                                 (optional: a split without it is scored without loss)

Candidate i of a sample is `<init-token> option_i </s>` (cut to --max-option-length) followed by
`<separator-token> context </s>`, shortened to --max-positions by --shorten-method; the model's
ranking head scores each candidate (the sentence_ranking criterion). The order is a seeded
permutation (numpy seed --seed), kept as is with --no-shuffle. `<mask>` is appended to the dictionary,
as fairseq does, so the vocabulary matches a pretrained RoBERTa.
"""
from __future__ import annotations

import logging
import os

import numpy as np

from fairseq.data import (
    ConcatSentencesDataset,
    Dictionary,
    IdDataset,
    MMapIndexedDataset,
    NestedDictionaryDataset,
    NumelDataset,
    NumSamplesDataset,
    PrependTokenDataset,
    RawLabelDataset,
    RightPadDataset,
    SortDataset,
    TruncateDataset,
    checks,
    data_utils,
)
from fairseq.data.shorten_dataset import maybe_shorten_dataset
from fairseq.models.roberta import task_heads
from fairseq.tasks.base import LegacyFairseqTask, register_task

logger = logging.getLogger(__name__)


def read_labels(path: str, num_classes: int) -> list:
    """One integer in [0, num_classes) per line, with a clear error naming the file and line."""
    labels = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            try:
                label = int(line.strip())
            except ValueError:
                raise ValueError(f"{path}:{lineno}: expected an integer label, got {line.rstrip()!r}") from None
            if not 0 <= label < num_classes:
                raise ValueError(f"{path}:{lineno}: label {label} is outside --num-classes {num_classes}")
            labels.append(label)
    return labels


@register_task("sentence_ranking")
class SentenceRankingTask(LegacyFairseqTask):
    @staticmethod
    def add_args(parser):
        g = parser.add_argument_group("task")
        add = g.add_argument
        add("data", metavar="FILE", help="data directory with input0/ (context), input1.. (candidates), label/")
        add("--num-classes", type=int, help="number of candidates to rank")
        add("--init-token", type=int, help="token prepended to each candidate (RoBERTa: 0 = <s>)")
        add("--separator-token", type=int, help="token prepended to the context (RoBERTa: 2 = </s>)")
        add("--no-shuffle", action="store_true", help="keep the data order (no seeded permutation)")
        add("--shorten-method", default="none", choices=["none", "truncate", "random_crop"],
            help="shorten candidates longer than --max-positions")
        add("--shorten-data-split-list", default="", help="comma-separated splits to shorten (default: all)")
        add("--max-option-length", type=int, help="cut each candidate (before the context) to this many tokens")
        if "--max-positions" not in parser._option_string_actions:  # a model flag, unless no model is chosen
            add("--max-positions", type=int, default=512, help="max input length")

    def __init__(self, args, dictionary: Dictionary):
        super().__init__(args)
        self.dictionary = dictionary

    @classmethod
    def load_dictionary(cls, args, filename, source=True):
        dictionary = Dictionary.load(filename)
        dictionary.add_symbol("<mask>")
        return dictionary

    @classmethod
    def setup_task(cls, args, **kwargs):
        if args.criterion != "sentence_ranking":
            raise ValueError(f"--task sentence_ranking needs --criterion sentence_ranking (got {args.criterion!r})")
        if not args.num_classes or args.num_classes <= 0:
            raise ValueError(f"--task sentence_ranking needs --num-classes (> 0), got {args.num_classes}")
        path = os.path.join(args.data, "input0", "dict.txt")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"dictionary not found: {path} (is {args.data} a preprocess_RACE.sh output?)")
        dictionary = cls.load_dictionary(args, path, source=True)
        logger.info(f"[input] dictionary: {len(dictionary)} types")
        return cls(args, dictionary)

    def _input(self, kind: str, split: str, combine: bool):
        path = os.path.join(self.args.data, kind, split)
        dataset = data_utils.load_indexed_dataset(path, self.source_dictionary, getattr(self.args, "dataset_impl", None),
                                                  combine=combine)
        if dataset is None:
            raise FileNotFoundError(f"dataset not found: {path}.bin/.idx (split {split!r})")
        if isinstance(dataset, MMapIndexedDataset):  # ids a corrupt or mismatched file would feed the model
            checks.check_token_ids(dataset, len(self.dictionary), os.path.join(self.args.data, "input0", "dict.txt"))
        return dataset

    def load_dataset(self, split, epoch=1, combine=False, **kwargs):
        args = self.args
        context = self._input("input0", split, combine)
        if args.separator_token is not None:
            context = PrependTokenDataset(context, args.separator_token)
        candidates = []
        for i in range(args.num_classes):
            option = self._input(f"input{i + 1}", split, combine)
            if len(option) != len(context):
                raise ValueError(f"{args.data}/input{i + 1}/{split} has {len(option)} samples, input0 has {len(context)}")
            if args.init_token is not None:
                option = PrependTokenDataset(option, args.init_token)
            if args.max_option_length is not None:
                option = TruncateDataset(option, args.max_option_length)
            candidate = ConcatSentencesDataset(option, context)
            candidates.append(maybe_shorten_dataset(candidate, split, args.shorten_data_split_list,
                                                    args.shorten_method, args.max_positions, args.seed))
        with data_utils.numpy_seed(args.seed):
            shuffle = np.random.permutation(len(candidates[0]))
        fields = {"id": IdDataset(), "nsentences": NumSamplesDataset(),
                  "ntokens": NumelDataset(candidates[0], reduce=True)}
        for i, candidate in enumerate(candidates):
            fields[f"net_input{i + 1}"] = {
                "src_tokens": RightPadDataset(candidate, pad_idx=self.source_dictionary.pad()),
                "src_lengths": NumelDataset(candidate, reduce=False),
            }
        label_path = os.path.join(args.data, "label", f"{split}.label")
        if os.path.exists(label_path):
            labels = read_labels(label_path, args.num_classes)
            if len(labels) != len(context):
                raise ValueError(f"{label_path} has {len(labels)} labels for {len(context)} samples")
            fields["target"] = RawLabelDataset(labels)
        dataset = NestedDictionaryDataset(fields, sizes=[np.maximum.reduce([c.sizes for c in candidates])])
        if not args.no_shuffle:
            dataset = SortDataset(dataset, sort_order=[shuffle])
        logger.info(f"Loaded {split} with #samples: {len(dataset)}")
        self.datasets[split] = dataset
        return dataset

    def build_model(self, args, from_checkpoint=False):
        model = super().build_model(args, from_checkpoint)
        model.register_classification_head(getattr(args, "ranking_head_name", "sentence_classification_head"),
                                           num_classes=1)
        return task_heads.keep_task_heads(model)  # restore a pretrained masked LM: the ranking head starts fresh

    def max_positions(self):
        return self.args.max_positions

    @property
    def source_dictionary(self):
        return self.dictionary

    @property
    def target_dictionary(self):
        return self.dictionary
