"""fairseq.data: dictionary, binarized datasets, the dataset wrappers tasks and plugins compose, and batching.

The masked_lm task builds its data from these same wrappers (tasks/masked_lm.py: TokenBlockDataset ->
PrependTokenDataset -> MaskTokensDataset -> NestedDictionaryDataset -> SortDataset), so a plugin that
composes them gets exactly our batches.
"""
from fairseq.data.dictionary import Dictionary
from fairseq.data.fairseq_dataset import FairseqDataset, FairseqIterableDataset
from fairseq.data.base_wrapper_dataset import BaseWrapperDataset
from fairseq.data.concat_dataset import ConcatDataset
from fairseq.data.concat_sentences_dataset import ConcatSentencesDataset
from fairseq.data.indexed_dataset import (
    MMapIndexedDataset,
    MMapIndexedDatasetBuilder,
    best_fitting_dtype,
    dataset_exists,
)
from fairseq.data.id_dataset import IdDataset
from fairseq.data.language_pair_dataset import LanguagePairDataset
from fairseq.data.list_dataset import ListDataset
from fairseq.data.mask_tokens_dataset import MaskTokensDataset
from fairseq.data.nested_dictionary_dataset import NestedDictionaryDataset
from fairseq.data.num_samples_dataset import NumSamplesDataset
from fairseq.data.numel_dataset import NumelDataset
from fairseq.data.offset_tokens_dataset import OffsetTokensDataset
from fairseq.data.pad_dataset import LeftPadDataset, PadDataset, RightPadDataset
from fairseq.data.prepend_token_dataset import PrependTokenDataset
from fairseq.data.raw_label_dataset import RawLabelDataset
from fairseq.data.resampling_dataset import ResamplingDataset
from fairseq.data.shorten_dataset import RandomCropDataset, TruncateDataset
from fairseq.data.sort_dataset import SortDataset
from fairseq.data.strip_token_dataset import StripTokenDataset
from fairseq.data.token_block_dataset import TokenBlockDataset
from fairseq.data.iterators import CountingIterator, EpochBatchIterator, GroupedIterator, ShardedIterator
from fairseq.data import data_utils, iterators  # noqa: F401  (fairseq.data.data_utils / .iterators)

__all__ = [
    "BaseWrapperDataset",
    "ConcatSentencesDataset",
    "CountingIterator",
    "Dictionary",
    "EpochBatchIterator",
    "FairseqDataset",
    "FairseqIterableDataset",
    "GroupedIterator",
    "IdDataset",
    "LanguagePairDataset",
    "LeftPadDataset",
    "ListDataset",
    "MaskTokensDataset",
    "MMapIndexedDataset",
    "MMapIndexedDatasetBuilder",
    "NestedDictionaryDataset",
    "NumelDataset",
    "NumSamplesDataset",
    "OffsetTokensDataset",
    "PadDataset",
    "PrependTokenDataset",
    "RandomCropDataset",
    "RawLabelDataset",
    "ResamplingDataset",
    "RightPadDataset",
    "ShardedIterator",
    "SortDataset",
    "StripTokenDataset",
    "TokenBlockDataset",
    "TruncateDataset",
    "best_fitting_dtype",
    "dataset_exists",
]
