"""Data pipeline: dictionary, mmap datasets, token blocks, masking, batching (fairseq 0.12.2 formats)."""
from fairseq.data.dictionary import Dictionary
from fairseq.data.indexed_dataset import (
    MMapIndexedDataset,
    MMapIndexedDatasetBuilder,
    best_fitting_dtype,
    dataset_exists,
)
from fairseq.data.iterators import EpochBatchIterator, batch_by_size, filter_by_size, ordered_indices
from fairseq.data.mlm_dataset import MaskedLMDataset, collate_tokens
from fairseq.data.token_blocks import TokenBlockDataset, build_blocks

__all__ = [
    "Dictionary",
    "MMapIndexedDataset",
    "MMapIndexedDatasetBuilder",
    "best_fitting_dtype",
    "dataset_exists",
    "EpochBatchIterator",
    "batch_by_size",
    "filter_by_size",
    "ordered_indices",
    "MaskedLMDataset",
    "collate_tokens",
    "TokenBlockDataset",
    "build_blocks",
]
