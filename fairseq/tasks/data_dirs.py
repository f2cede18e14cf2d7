"""A task's data directories: the shards of the data argument and the dictionary they share.

fairseq's rule for DATA1:DATA2:...: epoch k reads the train split of shard (k-1) mod n; the dictionary
and the valid split come from the first. A missing shard fails at set-up, not at the epoch that reads it.
"""
from __future__ import annotations

import logging
import os

from fairseq import utils
from fairseq.data.dictionary import Dictionary
from fairseq.data.indexed_dataset import dataset_exists

logger = logging.getLogger(__name__)


def data_paths(data: str) -> list:
    """The shards of the data argument, fairseq's rule: split on ':' (epoch k reads shard (k-1) mod n,
    the dictionary and the valid split come from the first)."""
    paths = [p for p in utils.split_paths(str(data)) if p]
    if not paths:
        raise ValueError("no data directory given")
    return paths


def check_shards(paths: list, train_split: str) -> None:
    """Fail before any training when a shard of a sharded corpus is missing (fairseq would find out
    only at the epoch that reads it): every shard must be a directory holding the train split."""
    for i, path in enumerate(paths):
        where = f"shard {i + 1} of {len(paths)} in the data argument"
        if not os.path.isdir(path):
            raise FileNotFoundError(f"data shard not found: {path} ({where})")
        if not dataset_exists(os.path.join(path, train_split)):
            raise FileNotFoundError(f"dataset not found: {os.path.join(path, train_split)}.bin/.idx ({where})")


def load_data_dictionary(args) -> Dictionary:
    """dict.txt of the first shard of args.data, after checking every shard holds the train split."""
    paths = data_paths(args.data)
    if len(paths) > 1:
        check_shards(paths, getattr(args, "train_subset", "train"))
    dict_path = os.path.join(paths[0], "dict.txt")
    if not os.path.isfile(dict_path):
        raise FileNotFoundError(f"dictionary not found: {dict_path} (is {paths[0]} a fairseq data-bin?)")
    dictionary = Dictionary.load(dict_path)
    logger.info(f"dictionary: {len(dictionary)} types")
    return dictionary
