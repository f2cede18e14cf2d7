"""Ordering, filtering, batching and EpochBatchIterator against fairseq's reference batches."""
import json

import numpy as np
import pytest
import torch

from fairseq.data import data_utils
from fairseq.data.data_utils import check_ignored_sizes
from fairseq.data.iterators import EpochBatchIterator
from test_masking import build_valid


def ordered_indices(sizes, seed):
    """By size, ties in a permutation seeded by `seed` (what masked_lm's SortDataset does)."""
    return np.lexsort((np.random.RandomState(seed).permutation(len(sizes)), sizes))


def batch_by_size(indices, sizes, max_tokens=None, max_sentences=None, required_batch_size_multiple=1):
    """fairseq's data_utils.batch_by_size with the sizes of `indices` taken from `sizes`."""
    indices = np.asarray(indices, dtype=np.int64)
    return data_utils.batch_by_size(indices, None, num_tokens_vec=np.asarray(sizes)[indices], max_tokens=max_tokens,
                                    max_sentences=max_sentences,
                                    required_batch_size_multiple=required_batch_size_multiple)


@pytest.fixture(scope="module")
def ref(peer_dir):
    return json.loads((peer_dir / "reference" / "batch_valid_first.json").read_text())


@pytest.fixture(scope="module")
def summary(peer_dir):
    return json.loads((peer_dir / "reference" / "token_blocks_summary.json").read_text())


def valid_batches(ds):
    """What the task's get_batch_iterator does: the dataset's order, size filter, batches."""
    idx = ds.ordered_indices()
    idx, ignored = ds.filter_indices_by_size(idx, 128)
    return idx, ignored, ds.batch_by_size(idx, max_sentences=8, required_batch_size_multiple=8)


def _assert_batch(batch, want):
    assert batch["id"].tolist() == want["id"]
    assert batch["nsentences"] == want["nsentences"]
    assert batch["ntokens"] == want["ntokens"]
    assert batch["net_input"]["src_tokens"].tolist() == want["net_input"]["src_tokens"]
    assert batch["net_input"]["src_lengths"].tolist() == want["net_input"]["src_lengths"]
    assert batch["target"].tolist() == want["target"]
    assert list(batch["net_input"]["src_tokens"].shape) == want["shape"]


def test_order_filter_batches_equal_fairseq(peer_dir, ref, summary):
    ds, _ = build_valid(peer_dir)
    assert ds.ordered_indices().tolist() == ref["ordered_indices_after_sort"]
    assert ordered_indices(ds.dataset.sizes[0], 1).tolist() == ref["ordered_indices_after_sort"]
    idx, ignored, batches = valid_batches(ds)
    assert len(ignored) == 19
    assert ignored[:10] == summary["full_split_through_task"]["valid"]["complete"][
        "first_filtered_ids_in_ordered_indices_order"]
    assert [b.tolist() for b in batches] == ref["A_all_batches_in_order"]
    assert len(batches) == ref["num_batches"]


def test_filter_error_text_equals_fairseq(peer_dir, summary):
    ds, _ = build_valid(peer_dir)
    with pytest.raises(ValueError) as e:
        _, ignored = ds.filter_indices_by_size(ds.ordered_indices(), 128)
        check_ignored_sizes(ignored, ds.size, 128, raise_on_invalid=True, split_name="valid")
    assert "Exception: " + str(e.value) == summary["valid_without_skip_flag"]


def test_validation_batch_A(peer_dir, ref):
    ds, _ = build_valid(peer_dir)
    _, _, batches = valid_batches(ds)
    ds.set_epoch(1)
    itr = EpochBatchIterator(ds, ds.collater, batches, seed=1).next_epoch_itr(shuffle=False, set_dataset_epoch=False)
    _assert_batch(next(itr), ref["A_validation_iterator_first_batch"])


def test_training_batch_B(peer_dir, ref):
    ds, _ = build_valid(peer_dir)
    _, _, batches = valid_batches(ds)
    epoch_itr = EpochBatchIterator(ds, ds.collater, batches, seed=1)
    itr = epoch_itr.next_epoch_itr(shuffle=True)
    assert ds.dataset.defn["target"].dataset.epoch == 1 and epoch_itr.epoch == 1  # the masks' epoch
    _assert_batch(next(itr), ref["B_training_style_iterator_first_batch"])


class ToyDataset:
    """Items are their own index; the collater returns ids (and records set_epoch)."""

    def __init__(self, n):
        self.sizes = np.random.RandomState(0).randint(1, 30, size=n)
        self.epochs = []

    def __len__(self):
        return len(self.sizes)

    def __getitem__(self, i):
        return i

    def set_epoch(self, e):
        self.epochs.append(e)

    def collater(self, items):
        return {} if not items else {"id": torch.tensor(items)}


def _ids(batch):
    return batch["id"].tolist() if batch else []


def test_resume_mid_epoch_equals_uninterrupted():
    ds = ToyDataset(103)
    batches = batch_by_size(ordered_indices(ds.sizes, 1), ds.sizes, max_tokens=64)
    full = EpochBatchIterator(ds, ds.collater, batches, seed=3)
    want = []
    for _ in range(3):
        want.append([_ids(b) for b in full.next_epoch_itr(shuffle=True)])
    assert want[0] != want[1]  # shuffled differently per epoch
    for stop_epoch, stop_at in [(1, 5), (2, 1), (2, len(batches) - 1), (1, len(batches))]:
        a = EpochBatchIterator(ds, ds.collater, batches, seed=3)
        for _ in range(stop_epoch - 1):
            list(a.next_epoch_itr())
        itr = a.next_epoch_itr()
        seen = [_ids(next(itr)) for _ in range(stop_at)]
        sd = a.state_dict()
        b = EpochBatchIterator(ds, ds.collater, batches, seed=3)
        b.load_state_dict(sd)
        rest = [_ids(x) for x in b.next_epoch_itr()]
        if stop_at < len(batches):
            assert b.epoch == stop_epoch and seen + rest == want[stop_epoch - 1]
        else:  # saved at the end of an epoch: resume starts the next one
            assert sd["epoch"] == stop_epoch + 1 and sd["iterations_in_epoch"] == 0
            assert rest == want[stop_epoch]


def test_state_dict_fields_and_set_epoch():
    ds = ToyDataset(20)
    it = EpochBatchIterator(ds, ds.collater, batch_by_size(np.arange(20), ds.sizes, max_sentences=4), seed=1)
    e = it.next_epoch_itr()
    next(e)
    assert it.state_dict() == {"version": 2, "epoch": 1, "iterations_in_epoch": 1, "shuffle": True}
    list(e)
    assert it.end_of_epoch() and it.state_dict()["epoch"] == 2
    it.next_epoch_itr()
    assert ds.epochs == [1, 2] and it.epoch == 2


def test_sharding_disjoint_equal_length():
    ds = ToyDataset(50)
    batches = batch_by_size(np.arange(50), ds.sizes, max_sentences=3)  # 17 batches
    shards = []
    for k in range(4):
        it = EpochBatchIterator(ds, ds.collater, batches, seed=1, num_shards=4, shard_id=k)
        shards.append([_ids(b) for b in it.next_epoch_itr(shuffle=True)])
        assert len(it) == 5
    assert all(len(s) == 5 for s in shards)
    flat = [i for s in shards for b in s for i in b]
    assert sorted(flat) == list(range(50))  # disjoint and complete
    assert sum(1 for s in shards for b in s if b == []) == 3  # padded with empty batches


@pytest.mark.parametrize("max_tokens,max_sentences,mult", [(64, None, 1), (None, 5, 1), (100, 8, 4), (40, 3, 2)])
def test_batch_by_size_constraints(max_tokens, max_sentences, mult):
    rng = np.random.RandomState(1)
    sizes = rng.randint(1, 30, size=200)
    idx = ordered_indices(sizes, 1)
    batches = batch_by_size(idx, sizes, max_tokens, max_sentences, mult)
    assert np.concatenate(batches).tolist() == idx.tolist()  # order preserved, nothing lost
    for b in batches:
        if max_tokens:
            assert len(b) * sizes[b].max() <= max_tokens
        if max_sentences:
            assert len(b) <= max_sentences
    for b in batches[:-1]:
        assert len(b) % mult == 0 or len(b) < mult


def test_batch_by_size_equals_simple_rule_without_multiple():
    """With mult 1 the batching is plain greedy: close a batch when the next sample would overflow."""
    rng = np.random.RandomState(2)
    sizes = rng.randint(1, 50, size=300)
    idx = ordered_indices(sizes, 4)
    want, cur = [], []
    for i in idx:
        cand = cur + [i]
        if cur and (len(cand) * max(sizes[cand]) > 120 or len(cand) > 7):
            want.append(cur)
            cand = [i]
        cur = cand
    want.append(cur)
    got = batch_by_size(idx, sizes, max_tokens=120, max_sentences=7)
    assert [b.tolist() for b in got] == [list(map(int, b)) for b in want]


def test_batch_errors():
    with pytest.raises(ValueError, match="max_tokens=5"):
        batch_by_size(np.arange(3), np.array([1, 9, 2]), max_tokens=5)
    assert batch_by_size(np.zeros(0, dtype=np.int64), np.zeros(0), max_tokens=5) == []
