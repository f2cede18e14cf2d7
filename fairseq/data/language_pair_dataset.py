"""fairseq.data.LanguagePairDataset: (source, target) sentence pairs and fairseq's batch layout for them.

fairseq's training-loop tests and its multi-corpus datasets build their toy data from this class, and
plugins for sequence-to-sequence tasks use it; this package trains no translation model itself, so it
keeps fairseq 0.12.2's item and batch semantics but not its extras: word alignments (align_dataset)
and length buckets (num_buckets) are refused with a clear error.

An item is {"id", "source", "target"} (+ "constraints"). `collate` pads the sources (left by default)
and targets (right), orders the batch by descending source length (`id` follows the order), and with
input feeding adds prev_output_tokens: the target rotated right by one with eos first.
"""
from __future__ import annotations

import numpy as np
import torch

from fairseq.data import data_utils
from fairseq.data.fairseq_dataset import FairseqDataset


def collate(samples, pad_idx, eos_idx, left_pad_source=True, left_pad_target=False, input_feeding=True,
            pad_to_length=None, pad_to_multiple=1):
    """A batch from LanguagePairDataset items (fairseq's layout); {} for no items."""
    if len(samples) == 0:
        return {}
    if samples[0].get("alignment") is not None:
        raise ValueError("LanguagePairDataset: word alignments are not supported")

    def merge(key, left_pad, move_eos_to_beginning=False, length=None):
        return data_utils.collate_tokens([s[key] for s in samples], pad_idx, eos_idx, left_pad,
                                         move_eos_to_beginning, pad_to_length=length,
                                         pad_to_multiple=pad_to_multiple)

    pad_to = pad_to_length or {}
    src_tokens = merge("source", left_pad_source, length=pad_to.get("source"))
    src_lengths = torch.LongTensor([s["source"].ne(pad_idx).long().sum() for s in samples])
    src_lengths, order = src_lengths.sort(descending=True)
    batch = {
        "id": torch.LongTensor([s["id"] for s in samples]).index_select(0, order),
        "nsentences": len(samples),
        "ntokens": src_lengths.sum().item(),
        "net_input": {"src_tokens": src_tokens.index_select(0, order), "src_lengths": src_lengths},
        "target": None,
    }
    if samples[0].get("target") is not None:
        target = merge("target", left_pad_target, length=pad_to.get("target"))
        batch["target"] = target.index_select(0, order)
        batch["ntokens"] = sum(int(s["target"].ne(pad_idx).long().sum()) for s in samples)
        if samples[0].get("prev_output_tokens") is not None:
            prev = merge("prev_output_tokens", left_pad_target)
        elif input_feeding:  # the decoder's input: the target shifted right, eos first
            prev = merge("target", left_pad_target, move_eos_to_beginning=True, length=pad_to.get("target"))
        else:
            prev = None
        if prev is not None:
            batch["net_input"]["prev_output_tokens"] = prev.index_select(0, order)
    if samples[0].get("constraints") is not None:
        lens = [s["constraints"].size(0) for s in samples]
        constraints = torch.zeros((len(samples), max(lens))).long()
        for i, s in enumerate(samples):
            constraints[i, : lens[i]] = s["constraints"]
        batch["constraints"] = constraints.index_select(0, order)
    return batch


class LanguagePairDataset(FairseqDataset):
    def __init__(self, src, src_sizes, src_dict, tgt=None, tgt_sizes=None, tgt_dict=None, left_pad_source=True,
                 left_pad_target=False, shuffle=True, input_feeding=True, remove_eos_from_source=False,
                 append_eos_to_target=False, align_dataset=None, constraints=None, append_bos=False, eos=None,
                 num_buckets=0, src_lang_id=None, tgt_lang_id=None, pad_to_multiple=1):
        if align_dataset is not None:
            raise ValueError("LanguagePairDataset: align_dataset (word alignments) is not supported")
        if num_buckets > 0:
            raise ValueError("LanguagePairDataset: num_buckets (length bucketing) is not supported")
        if tgt_dict is not None and (src_dict.pad(), src_dict.eos(), src_dict.unk()) != \
                (tgt_dict.pad(), tgt_dict.eos(), tgt_dict.unk()):
            raise ValueError("LanguagePairDataset: source and target dictionaries differ in pad/eos/unk")
        if tgt is not None and len(src) != len(tgt):
            raise ValueError(f"LanguagePairDataset: {len(src)} sources but {len(tgt)} targets")
        self.src, self.tgt = src, tgt
        self.src_sizes = np.array(src_sizes)
        self.tgt_sizes = np.array(tgt_sizes) if tgt_sizes is not None else None
        self.sizes = np.vstack((self.src_sizes, self.tgt_sizes)).T if self.tgt_sizes is not None else self.src_sizes
        self.src_dict, self.tgt_dict = src_dict, tgt_dict
        self.left_pad_source, self.left_pad_target = left_pad_source, left_pad_target
        self.shuffle, self.input_feeding = shuffle, input_feeding
        self.remove_eos_from_source, self.append_eos_to_target = remove_eos_from_source, append_eos_to_target
        self.align_dataset, self.constraints, self.append_bos = None, constraints, append_bos
        self.eos = eos if eos is not None else src_dict.eos()
        self.src_lang_id, self.tgt_lang_id = src_lang_id, tgt_lang_id
        self.buckets = None
        self.pad_to_multiple = pad_to_multiple

    def get_batch_shapes(self):
        return self.buckets

    def __getitem__(self, index):
        src_item = self.src[index]
        tgt_item = self.tgt[index] if self.tgt is not None else None
        tgt_dict = self.tgt_dict or self.src_dict
        if self.append_eos_to_target and tgt_item is not None and tgt_item[-1] != tgt_dict.eos():
            tgt_item = torch.cat([tgt_item, torch.LongTensor([tgt_dict.eos()])])
        if self.append_bos:
            if tgt_item is not None and self.tgt[index][0] != tgt_dict.bos():
                tgt_item = torch.cat([torch.LongTensor([tgt_dict.bos()]), self.tgt[index]])
            if src_item[0] != self.src_dict.bos():
                src_item = torch.cat([torch.LongTensor([self.src_dict.bos()]), src_item])
        if self.remove_eos_from_source and self.src[index][-1] == self.src_dict.eos():
            src_item = self.src[index][:-1]
        example = {"id": index, "source": src_item, "target": tgt_item}
        if self.constraints is not None:
            example["constraints"] = self.constraints[index]
        return example

    def __len__(self) -> int:
        return len(self.src)

    def collater(self, samples, pad_to_length=None):
        batch = collate(samples, pad_idx=self.src_dict.pad(), eos_idx=self.eos,
                        left_pad_source=self.left_pad_source, left_pad_target=self.left_pad_target,
                        input_feeding=self.input_feeding, pad_to_length=pad_to_length,
                        pad_to_multiple=self.pad_to_multiple)
        if batch and self.src_lang_id is not None:
            batch["net_input"]["src_lang_id"] = self._lang_ids(self.src_lang_id, batch)
        if batch and self.tgt_lang_id is not None:
            batch["tgt_lang_id"] = self._lang_ids(self.tgt_lang_id, batch)
        return batch

    @staticmethod
    def _lang_ids(lang_id, batch):
        src_tokens = batch["net_input"]["src_tokens"]
        return torch.LongTensor([[lang_id]]).expand(src_tokens.size(0), 1).to(src_tokens)

    def num_tokens(self, index):
        """max(source, target) length: what --max-tokens counts."""
        return max(self.src_sizes[index], self.tgt_sizes[index] if self.tgt_sizes is not None else 0)

    def num_tokens_vec(self, indices):
        sizes = self.src_sizes[indices]
        return np.maximum(sizes, self.tgt_sizes[indices]) if self.tgt_sizes is not None else sizes

    def size(self, index):
        """(source, target) length: what --max-positions filters on (target 0 without targets)."""
        return self.src_sizes[index], self.tgt_sizes[index] if self.tgt_sizes is not None else 0

    def ordered_indices(self):
        """Shuffled (numpy's global RNG) or in order, then stably by target and then source length."""
        indices = np.random.permutation(len(self)).astype(np.int64) if self.shuffle else \
            np.arange(len(self), dtype=np.int64)
        if self.tgt_sizes is not None:
            indices = indices[np.argsort(self.tgt_sizes[indices], kind="mergesort")]
        return indices[np.argsort(self.src_sizes[indices], kind="mergesort")]

    def filter_indices_by_size(self, indices, max_sizes):
        """(kept, ignored) indices: source and target both within max_sizes (one int for both, or
        (max_source, max_target) with None for no limit)."""
        indices = np.asarray(indices, dtype=np.int64)
        if max_sizes is None:
            return indices, []
        max_src, max_tgt = (max_sizes, max_sizes) if isinstance(max_sizes, (int, float)) else max_sizes
        keep = np.ones(len(indices), dtype=bool)
        if max_src is not None:
            keep &= self.src_sizes[indices] <= max_src
        if max_tgt is not None and self.tgt_sizes is not None:
            keep &= self.tgt_sizes[indices] <= max_tgt
        return indices[keep], indices[~keep].tolist()

    @property
    def supports_prefetch(self) -> bool:
        return getattr(self.src, "supports_prefetch", False) and \
            (self.tgt is None or getattr(self.tgt, "supports_prefetch", False))

    def prefetch(self, indices):
        self.src.prefetch(indices)
        if self.tgt is not None:
            self.tgt.prefetch(indices)
