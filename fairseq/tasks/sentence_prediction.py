"""The sentence_prediction task (GLUE fine-tuning, FAIRSEQ_SPEC section 9).

Data layout, as fairseq's GLUE recipe writes it:
    DATA/input0/{dict.txt, <split>.bin/.idx}    first sentence (BPE ids through the pretraining dict)
    DATA/input1/...                             second sentence, pair tasks only
    DATA/label/{dict.txt, <split>.bin/.idx}     class labels (own dictionary), or
    DATA/label/<split>.label                    --num-classes floats per line with --regression-target (STS-B: 1)

A sample is `<s> A </s>` or `<s> A </s> </s> B </s>` (--init-token prepended to input0,
--separator-token to input1); the class is the label-dictionary index minus 4 (the specials),
so classes are ordered by training-label frequency. `<mask>` is appended to both dictionaries,
as fairseq does, so the model vocabulary matches the pretrained checkpoint.
Ordering is a fixed permutation drawn with numpy seed --seed (no length sort: fairseq's
SortDataset keyed only by that permutation), so batches mix lengths.

Restoring a pretrained masked-LM checkpoint: the task's classification head is not in it.
fairseq fills such heads from the freshly initialised model and re-initialises (with a warning)
a checkpoint head whose shape differs; `upgrade_state_dict` does the same here and the model
built by `build_model` applies it in its own `load_state_dict`.
"""
from __future__ import annotations

import logging
import os
from typing import Optional

import numpy as np
import torch

from fairseq import models
from fairseq.models.roberta import task_heads
from fairseq.data.dictionary import Dictionary
from fairseq.data import checks
from fairseq.data.indexed_dataset import MMapIndexedDataset, dataset_exists
from fairseq.data.data_utils import collate_tokens
from fairseq.data.fairseq_dataset import FairseqDataset
from fairseq.tasks.base import FairseqTask, register_task

logger = logging.getLogger(__name__)

DEFAULT_HEAD = "sentence_classification_head"


def read_regression_labels(path: str, num_outputs: int = 1) -> np.ndarray:
    """Floats, one line per sample with exactly `num_outputs` numbers (fairseq's rule: --num-classes N
    with --regression-target is an N-output regression). Returns [n] for one output, else [n, N]."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"regression labels not found: {path} (written by fairseq-glue-prep for STS-B)")
    values = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            try:
                if len(fields) != num_outputs:
                    raise ValueError
                values.append([float(v) for v in fields])
            except ValueError:
                raise ValueError(f"{path}:{lineno}: expected {num_outputs} float label(s) (--num-classes), "
                                 f"got {line.rstrip()!r}") from None
    out = np.asarray(values, dtype=np.float32).reshape(-1, num_outputs)
    return out[:, 0] if num_outputs == 1 else out


class SentencePredictionDataset(FairseqDataset):
    """Item i: {"id", "source", "target"}; collater pads sources and stacks targets as [B, 1] ([B, N] for N-output regression)."""

    def __init__(self, input0, input1, targets: np.ndarray, pad: int, init_token: Optional[int],
                 separator_token: Optional[int], seed: int, truncate_to: Optional[int] = None):
        if input1 is not None and len(input1) != len(input0):
            raise ValueError(f"input0 has {len(input0)} sentences but input1 has {len(input1)}")
        if len(targets) != len(input0):
            raise ValueError(f"input0 has {len(input0)} sentences but there are {len(targets)} labels")
        self.input0, self.input1, self.targets = input0, input1, targets
        self.pad, self.init_token, self.separator_token = pad, init_token, separator_token
        sizes = np.asarray(input0.sizes, dtype=np.int64) + (init_token is not None)
        if input1 is not None:
            sizes = sizes + np.asarray(input1.sizes, dtype=np.int64) + (separator_token is not None)
        if truncate_to is not None:
            sizes = np.minimum(sizes, truncate_to)
        self.truncate_to = truncate_to
        self._sizes = sizes
        # fairseq draws the permutation under numpy_seed(seed) and sorts by it: order = argsort(perm)
        self.shuffle = np.random.RandomState(seed).permutation(len(input0))

    @property
    def sizes(self) -> np.ndarray:
        return self._sizes

    def __len__(self) -> int:
        return len(self.input0)

    def num_tokens(self, i: int) -> int:
        return int(self._sizes[i])

    def num_tokens_vec(self, indices) -> np.ndarray:
        return self._sizes[indices]

    def size(self, i: int) -> int:
        return int(self._sizes[i])

    def ordered_indices(self) -> np.ndarray:
        return np.argsort(self.shuffle, kind="stable")

    def __getitem__(self, i: int) -> dict:
        parts = []
        if self.init_token is not None:
            parts.append(torch.tensor([self.init_token], dtype=torch.long))
        parts.append(self.input0[i].long())
        if self.input1 is not None:
            if self.separator_token is not None:
                parts.append(torch.tensor([self.separator_token], dtype=torch.long))
            parts.append(self.input1[i].long())
        source = torch.cat(parts)
        if self.truncate_to is not None:
            source = source[: self.truncate_to]
        target = self.targets[i]
        target = torch.tensor(target, dtype=torch.float32 if self.targets.dtype.kind == "f" else torch.long).reshape(-1)
        return {"id": i, "source": source, "target": target}

    def collater(self, samples):
        if len(samples) == 0:
            return {}
        src = [s["source"] for s in samples]
        lengths = torch.tensor([v.numel() for v in src], dtype=torch.long)
        return {
            "id": torch.tensor([s["id"] for s in samples], dtype=torch.long),
            "nsentences": len(samples),
            "ntokens": int(lengths.sum()),
            "net_input": {"src_tokens": collate_tokens(src, self.pad), "src_lengths": lengths},
            "target": torch.stack([s["target"] for s in samples]),
        }


@register_task("sentence_prediction")
class SentencePredictionTask(FairseqTask):
    @classmethod
    def add_args(cls, parser):
        g = parser.add_argument_group("task")
        add = g.add_argument
        add("data", help="GLUE data directory with input0/, [input1/] and label/ (fairseq-glue-prep output)")
        add("--num-classes", type=int, default=-1, help="number of classes (1 with --regression-target)")
        add("--regression-target", action="store_true", help="real-valued target read from label/<split>.label")
        add("--init-token", type=int, default=None, help="token prepended to input0 (RoBERTa: 0 = <s>)")
        add("--separator-token", type=int, default=None, help="token prepended to input1 (RoBERTa: 2 = </s>)")
        add("--classification-head-name", default=DEFAULT_HEAD, help="name of the classification head")
        add("--no-shuffle", action="store_true", help="keep the data order (no seeded permutation)")
        add("--shorten-method", default="none", choices=["none", "truncate"],
            help="truncate samples longer than --max-positions instead of skipping them")
        add("--shorten-data-split-list", default="", help="comma-separated splits to shorten (default: all)")
        add("--add-prev-output-tokens", action="store_true",
            help="no effect here (warns): only encoder models exist here")
        # --max-positions is a model flag; add it only if the model flags are not on this parser
        if not any("--max-positions" in a.option_strings for a in parser._actions):
            add("--max-positions", type=int, default=512, help="max input length")

    def __init__(self, args, data_dictionary: Dictionary, label_dictionary: Optional[Dictionary]):
        super().__init__(args)
        self.dictionary = data_dictionary
        self.label_dictionary = label_dictionary
        self.mask_idx = data_dictionary.add_symbol("<mask>")
        if label_dictionary is not None:
            label_dictionary.add_symbol("<mask>")
        self.seed = int(getattr(args, "seed", 1))
        self.head_name = getattr(args, "classification_head_name", DEFAULT_HEAD) or DEFAULT_HEAD

    @classmethod
    def setup_task(cls, args, **kwargs):
        if len([p for p in str(args.data).split(":") if p]) > 1:
            raise ValueError(f"sentence_prediction reads one data directory (fairseq does not rotate its shards); "
                             f"got {args.data!r}")
        data = str(args.data).split(":")[0]
        num_classes = int(getattr(args, "num_classes", -1))
        regression = bool(getattr(args, "regression_target", False))
        if num_classes <= 0:
            raise ValueError(f"--num-classes must be set (> 0), got {num_classes}")
        data_dict = Dictionary.load(cls._dict_path(data, "input0"))
        logger.info(f"[input] dictionary: {len(data_dict)} types")
        label_dict = None
        if not regression:
            label_dict = Dictionary.load(cls._dict_path(data, "label"))
            labels = [s for s in label_dict.symbols[label_dict.nspecial:] if not s.startswith("madeupword")]
            if len(labels) != num_classes:
                raise ValueError(f"--num-classes {num_classes} does not match the {len(labels)} labels in "
                                 f"{cls._dict_path(data, 'label')}: {labels}")
            logger.info(f"[label] dictionary: {len(label_dict)} types")
        return cls(args, data_dict, label_dict)

    @staticmethod
    def _dict_path(data: str, kind: str) -> str:
        path = os.path.join(data, kind, "dict.txt")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"dictionary not found: {path} (is {data} a fairseq-glue-prep output?)")
        return path

    @property
    def source_dictionary(self) -> Dictionary:
        return self.dictionary

    @property
    def target_dictionary(self) -> Optional[Dictionary]:
        return self.label_dictionary

    def max_positions(self) -> int:
        return int(getattr(self.args, "max_positions", None) or 512)

    def _indexed(self, kind: str, split: str, required: bool = True):
        prefix = os.path.join(str(self.args.data).split(":")[0], kind, split)
        if not dataset_exists(prefix):
            if required:
                raise FileNotFoundError(f"dataset not found: {prefix}.bin/.idx (split {split!r})")
            return None
        dataset = MMapIndexedDataset(prefix)
        vocab = self.label_dictionary if kind == "label" else self.dictionary
        dict_path = os.path.join(os.path.dirname(os.path.dirname(prefix)), kind, "dict.txt")
        checks.check_token_ids(dataset, len(vocab), dict_path)  # ids a corrupt or mismatched file would feed
        return dataset

    def _targets(self, split: str) -> np.ndarray:
        data = str(self.args.data).split(":")[0]
        if self.args.regression_target:
            return read_regression_labels(os.path.join(data, "label", f"{split}.label"), int(self.args.num_classes))
        labels = self._indexed("label", split)
        nspecial = self.label_dictionary.nspecial
        eos = self.label_dictionary.eos()
        out = np.empty(len(labels), dtype=np.int64)
        for i in range(len(labels)):
            toks = [t for t in labels[i].tolist() if t != eos]
            if len(toks) != 1:
                raise ValueError(f"{data}/label/{split}: sample {i} has {len(toks)} label tokens, expected 1")
            out[i] = toks[0] - nspecial
            if not 0 <= out[i] < int(self.args.num_classes):
                sym = self.label_dictionary[toks[0]]
                raise ValueError(f"{data}/label/{split}: sample {i} has label {sym!r} (class {out[i]}), "
                                 f"outside --num-classes {self.args.num_classes}")
        return out

    def load_dataset(self, split: str, epoch: int = 1, combine: bool = False):
        if combine:
            raise ValueError("--combine-valid-subsets: sentence_prediction reads one valid split; name each in "
                             "--valid-subset instead")
        input0 = self._indexed("input0", split)
        checks.check_not_empty(split, os.path.join(str(self.args.data).split(":")[0], "input0", split), len(input0),
                               len(input0), "none")
        input1 = self._indexed("input1", split, required=False)
        targets = self._targets(split)
        shorten = getattr(self.args, "shorten_method", "none")
        splits = [s for s in str(getattr(self.args, "shorten_data_split_list", "") or "").split(",") if s]
        truncate = self.max_positions() if shorten == "truncate" and (not splits or split in splits) else None
        init = getattr(self.args, "init_token", None)
        sep = getattr(self.args, "separator_token", None)
        ds = SentencePredictionDataset(input0, input1, targets, self.dictionary.pad(), init, sep, self.seed,
                                       truncate_to=truncate)
        if getattr(self.args, "no_shuffle", False):
            ds.shuffle = np.arange(len(ds))
        logger.info(f"loaded {len(ds)} examples from: {os.path.join(str(self.args.data), 'input0', split)}")
        self.datasets[split] = ds
        return ds

    def ordered_indices(self, dataset, seed: int) -> np.ndarray:
        """The dataset's fixed seeded permutation: fairseq's sentence_prediction does not sort by length."""
        return dataset.ordered_indices()

    # ---- model ------------------------------------------------------------------------------
    def build_model(self, args):
        model = models.build_model(args, self)
        model.register_classification_head(self.head_name, num_classes=int(args.num_classes))
        return task_heads.keep_task_heads(model)  # restore a pretrained MLM checkpoint (see module doc)

    def upgrade_state_dict(self, state_dict, model):
        return task_heads.upgrade_heads(state_dict, model)
