"""fairseq.data.MonolingualDataset: language-model samples (the language_modeling task's dataset).

Wraps a TokenBlockDataset built with include_targets=True, whose item is (source, future, past): the
block shifted right by one (eos first), the block itself, and the block shifted by two. A left-to-right
model reads `source` and predicts `future` (fairseq's default target); "self" and "past" are the other
targets fairseq names. With several targets the sample's target is their list. add_bos_token puts <s>
in front of source and target. Batches (`collate`) are right-padded: {id, nsentences, ntokens (source
tokens), net_input: {src_tokens, src_lengths}, target}; fixed_pad_length / pad_to_bsz pad them further.
"""
from __future__ import annotations

import numpy as np
import torch

from fairseq.data import data_utils
from fairseq.data.fairseq_dataset import FairseqDataset

TARGETS = ("self", "future", "past")


def collate(samples, pad_idx, eos_idx, fixed_pad_length=None, pad_to_bsz=None):
    if len(samples) == 0:
        return {}

    def merge(values):
        return data_utils.collate_tokens(values, pad_idx, eos_idx, left_pad=False, pad_to_length=fixed_pad_length,
                                         pad_to_bsz=pad_to_bsz)

    src_tokens = merge([s["source"] for s in samples])
    target = samples[0]["target"]
    if target is None:
        target = src_tokens
    elif isinstance(target, list):
        target = [merge([s["target"][i] for s in samples]) for i in range(len(target))]
    else:
        target = merge([s["target"] for s in samples])
    return {
        "id": torch.LongTensor([s["id"] for s in samples]),
        "nsentences": len(samples),
        "ntokens": sum(len(s["source"]) for s in samples),
        "net_input": {"src_tokens": src_tokens,
                      "src_lengths": torch.LongTensor([s["source"].numel() for s in samples])},
        "target": target,
    }


class MonolingualDataset(FairseqDataset):
    def __init__(self, dataset, sizes, src_vocab, tgt_vocab=None, add_eos_for_other_targets=False, shuffle=False,
                 targets=None, add_bos_token=False, fixed_pad_length=None, pad_to_bsz=None, src_lang_idx=None,
                 tgt_lang_idx=None):
        if targets is not None and any(t not in TARGETS for t in targets):
            raise ValueError(f"MonolingualDataset: targets must be among {TARGETS}, got {targets}")
        self.dataset = dataset
        self.sizes = np.array(sizes)
        self.vocab = src_vocab
        self.tgt_vocab = tgt_vocab or src_vocab
        self.add_eos_for_other_targets = add_eos_for_other_targets
        self.shuffle = shuffle
        self.targets = targets or None
        self.add_bos_token = add_bos_token
        self.fixed_pad_length = fixed_pad_length
        self.pad_to_bsz = pad_to_bsz
        self.src_lang_idx, self.tgt_lang_idx = src_lang_idx, tgt_lang_idx

    def __getitem__(self, index):
        if self.targets is not None:
            source, target = self._make_source_target(*self.dataset[index])
        else:
            source, target = self.dataset[index], None
        if self.add_bos_token:
            source = torch.cat([source.new([self.vocab.bos()]), source])
            if target is not None:
                target = torch.cat([target.new([self.tgt_vocab.bos()]), target])
        return {"id": index, "source": source, "target": target}

    def __len__(self) -> int:
        return len(self.dataset)

    def _make_source_target(self, source, future_target, past_target):
        eos, pad = self.vocab.eos(), self.vocab.pad()
        if (self.add_eos_for_other_targets and ("self" in self.targets or "past" in self.targets)
                and source[-1] != eos):  # a block cut mid-sentence: close it so self/past end alike
            source = torch.cat([source, source.new([eos])])
            future_target = torch.cat([future_target, future_target.new([pad])])
            past_target = torch.cat([past_target.new([pad]), past_target[1:], source[-2, None]])
        chosen = {"self": source, "future": future_target, "past": past_target}
        target = [self._filter_vocab(chosen[t]) for t in self.targets]
        return source, target[0] if len(target) == 1 else target

    def _filter_vocab(self, target):
        """Ids beyond a smaller output vocabulary become <unk>."""
        if len(self.tgt_vocab) != len(self.vocab):
            target = target.masked_fill(target.ge(len(self.tgt_vocab)), self.tgt_vocab.unk())
        return target

    def collater(self, samples):
        return collate(samples, self.vocab.pad(), self.vocab.eos(), self.fixed_pad_length, self.pad_to_bsz)

    def num_tokens(self, index):
        return self.sizes[index]

    def num_tokens_vec(self, indices):
        return self.sizes[indices]

    def size(self, index):
        return self.sizes[index]

    def ordered_indices(self):
        """By length, ties in a random (numpy global RNG, seeded by the caller) or the natural order."""
        order = np.random.permutation(len(self)) if self.shuffle else np.arange(len(self))
        return np.lexsort([order, self.sizes])

    @property
    def supports_prefetch(self) -> bool:
        return getattr(self.dataset, "supports_prefetch", False)

    def prefetch(self, indices):
        self.dataset.prefetch(indices)
