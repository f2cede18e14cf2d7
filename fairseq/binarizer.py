"""Text -> mmap .bin/.idx, streamed and in parallel (fairseq's public `fairseq.binarizer` API).

`FileBinarizer.multiprocess_dataset` cuts the input into `num_workers` line-aligned byte ranges; the
calling process binarizes the first range straight into the output while worker processes each
stream one of the others into `<output_prefix>.pt<k>.bin/.idx`, which the caller then appends in
order. Every range is read a block of lines at a time (fairseq.file_chunker_utils), so memory stays
flat whatever the corpus size, and the bytes are the same for any number of workers.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import sys
import typing as tp
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch

from fairseq.data import indexed_dataset
from fairseq.data.dictionary import Dictionary, tokenize_line
from fairseq.file_chunker_utils import find_offsets, line_blocks


@dataclass
class BinarizeSummary:
    """Sentences, tokens (eos included) and the words replaced by <unk> (None: not tracked)."""

    num_seq: int = 0
    replaced: tp.Optional[Counter] = None
    num_tok: int = 0

    @property
    def num_replaced(self) -> int:
        return 0 if self.replaced is None else sum(self.replaced.values())

    @property
    def replaced_percent(self) -> float:
        return 100 * self.num_replaced / self.num_tok if self.num_tok else 0.0

    def __str__(self) -> str:
        base = f"{self.num_seq} sents, {self.num_tok} tokens"
        return base if self.replaced is None else f"{base}, {self.replaced_percent:.3}% replaced"

    def merge(self, other: "BinarizeSummary") -> None:
        if other.replaced is not None:
            self.replaced = other.replaced if self.replaced is None else self.replaced + other.replaced
        self.num_seq += other.num_seq
        self.num_tok += other.num_tok


class Binarizer(ABC):
    """Turns one line of text into a tensor of ids, counting into a summary."""

    @abstractmethod
    def binarize_line(self, line: str, summary: BinarizeSummary) -> torch.IntTensor:
        ...

    def binarize_lines(self, lines: tp.List[str], summary: BinarizeSummary) -> tp.Tuple[list, list]:
        """(concatenated ids, per-line lengths) of a block of lines; subclasses may do it faster."""
        flat: list = []
        sizes: list = []
        for line in lines:
            ids = self.binarize_line(line, summary).tolist()
            flat.extend(ids)
            sizes.append(len(ids))
        return flat, sizes


class _UnkCounting(dict):
    """symbol -> id; a missing symbol gives <unk> and is counted as replaced (fairseq's rule)."""

    def __init__(self, indices: dict, unk: int, replaced: Counter):
        super().__init__(indices)
        self.unk, self.replaced = unk, replaced

    def __missing__(self, word: str) -> int:
        self.replaced[word] += 1
        return self.unk


class VocabularyDatasetBinarizer(Binarizer):
    """Ids of each line's tokens in `dict` (unknown words -> <unk>), eos appended by default."""

    def __init__(
        self,
        dict: Dictionary,
        tokenize: tp.Callable[[str], tp.List[str]] = tokenize_line,
        append_eos: bool = True,
        reverse_order: bool = False,
        already_numberized: bool = False,
    ) -> None:
        super().__init__()
        self.dict = dict
        self.tokenize = tokenize
        self.append_eos = append_eos
        self.reverse_order = reverse_order
        self.already_numberized = already_numberized
        self._lookup: tp.Optional[_UnkCounting] = None

    def _lookup_for(self, replaced: Counter) -> _UnkCounting:
        """The symbol table as an <unk>-counting dict, rebuilt only when the dictionary grew."""
        if self._lookup is None or len(self._lookup) != len(self.dict.indices):
            self._lookup = _UnkCounting(self.dict.indices, self.dict.unk(), replaced)
        self._lookup.replaced = replaced
        return self._lookup

    def binarize_line(self, line: str, summary: BinarizeSummary) -> torch.IntTensor:
        flat, _ = self.binarize_lines([line], summary)
        return torch.tensor(flat, dtype=torch.int32)

    def binarize_lines(self, lines: tp.List[str], summary: BinarizeSummary) -> tp.Tuple[list, list]:
        if summary.replaced is None:
            summary.replaced = Counter()
        eos = [self.dict.eos()] if self.append_eos else []
        flat: list = []
        sizes: list = []
        if self.already_numberized:
            for line in lines:
                ids = [int(s) for s in line.split()]
                if self.reverse_order:
                    ids.reverse()
                flat += ids
                flat += eos
                sizes.append(len(ids) + len(eos))
        else:
            # str.split() splits on exactly the characters tokenize_line's \s+ matches, and is faster.
            split = str.split if self.tokenize is tokenize_line else self.tokenize
            lookup = self._lookup_for(summary.replaced).__getitem__
            for line in lines:
                words = split(line)
                if self.reverse_order:
                    words.reverse()
                flat += map(lookup, words)
                flat += eos
                sizes.append(len(words) + len(eos))
        summary.num_seq += len(sizes)
        summary.num_tok += len(flat)
        return flat, sizes


def _worker_prefix(output_prefix: str, worker_id: int) -> str:
    return f"{output_prefix}.pt{worker_id}"


def _remove_dataset(prefix: str) -> None:
    for path in (indexed_dataset.data_file_path(prefix), indexed_dataset.index_file_path(prefix)):
        if os.path.exists(path):
            os.remove(path)


class FileBinarizer:
    """Binarizes a whole file (or a byte range of it) into an indexed dataset."""

    @classmethod
    def multiprocess_dataset(
        cls,
        input_file: str,
        dataset_impl: str,
        binarizer: Binarizer,
        output_prefix: str,
        vocab_size=None,
        num_workers: int = 1,
    ) -> BinarizeSummary:
        """Write `<output_prefix>.bin/.idx` for `input_file` using `num_workers` processes; the summary.

        On any error nothing is left behind: neither the output nor the workers' partial files.
        """
        if num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        offsets = find_offsets(input_file, num_workers)
        ranges = list(zip(offsets, offsets[1:]))
        worker_prefixes = [_worker_prefix(output_prefix, k) for k in range(1, len(ranges))]
        summary = BinarizeSummary()
        pool = None
        try:
            results = []
            if worker_prefixes:
                ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
                pool = ctx.Pool(processes=len(worker_prefixes))
                results = [
                    pool.apply_async(
                        cls._binarize_chunk_and_finalize,
                        (binarizer, input_file, start, end, prefix, dataset_impl),
                        {"vocab_size": vocab_size},
                    )
                    for (start, end), prefix in zip(ranges[1:], worker_prefixes)
                ]
                pool.close()
            builder, first = cls._binarize_file_chunk(
                binarizer, input_file, ranges[0][0], ranges[0][1], output_prefix, dataset_impl, vocab_size
            )
            summary.merge(first)
            for result, prefix in zip(results, worker_prefixes):
                summary.merge(result.get())
                builder.merge_file_(prefix)
                _remove_dataset(prefix)
            builder.finalize(indexed_dataset.index_file_path(output_prefix))
        except BaseException:
            if pool is not None:
                pool.terminate()
            _remove_dataset(output_prefix)
            raise
        finally:
            if pool is not None:
                pool.join()
            for prefix in worker_prefixes:
                _remove_dataset(prefix)
        return summary

    @staticmethod
    def _binarize_file_chunk(
        binarizer: Binarizer,
        filename: str,
        offset_start: int,
        offset_end: int,
        output_prefix: str,
        dataset_impl: str,
        vocab_size=None,
    ) -> tp.Tuple[indexed_dataset.MMapIndexedDatasetBuilder, BinarizeSummary]:
        """Stream bytes [offset_start, offset_end) (end -1: to EOF) into a builder left open for merging."""
        builder = indexed_dataset.make_builder(
            indexed_dataset.data_file_path(output_prefix), impl=dataset_impl, vocab_size=vocab_size
        )
        summary = BinarizeSummary()
        try:
            for lines in line_blocks(filename, offset_start, offset_end):
                flat, sizes = binarizer.binarize_lines(lines, summary)
                builder.add_items(np.array(flat, dtype=np.int64), np.array(sizes, dtype=np.int32))
        except BaseException:
            builder.close()
            raise
        return builder, summary

    @classmethod
    def _binarize_chunk_and_finalize(
        cls,
        binarizer: Binarizer,
        filename: str,
        offset_start: int,
        offset_end: int,
        output_prefix: str,
        dataset_impl: str,
        vocab_size=None,
    ) -> BinarizeSummary:
        builder, summary = cls._binarize_file_chunk(
            binarizer, filename, offset_start, offset_end, output_prefix, dataset_impl, vocab_size
        )
        builder.finalize(indexed_dataset.index_file_path(output_prefix))
        return summary
