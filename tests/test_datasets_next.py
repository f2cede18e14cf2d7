"""fairseq's next-ring datasets: LanguagePairDataset batches as fairseq 0.12.2 builds them, ConcatDataset sample
ratios, ResamplingDataset draws that depend on (seed, epoch) only, MultiCorpusDataset proportions."""
from collections import OrderedDict

import numpy as np
import torch

from fairseq.data import ConcatDataset, Dictionary, LanguagePairDataset, ListDataset, ResamplingDataset
from fairseq.data.multi_corpus_dataset import MultiCorpusDataset


def _pairs(shuffle=False):
    d = Dictionary()
    src = [torch.tensor([4, 5, 2]), torch.tensor([4, 5, 6, 7, 2]), torch.tensor([4, 2])]
    tgt = [torch.tensor([5, 2]), torch.tensor([6, 2]), torch.tensor([4, 5, 6, 7, 8, 2])]
    return LanguagePairDataset(src, [3, 5, 2], d, tgt, [2, 2, 6], d, shuffle=shuffle)


def test_language_pair_batch_equals_fairseqs():
    """The batch and orders fairseq 0.12.2 gives for these three pairs (checked side by side)."""
    ds = _pairs()
    b = ds.collater([ds[i] for i in range(3)])
    assert b["id"].tolist() == [1, 0, 2] and b["ntokens"] == 10 and b["nsentences"] == 3
    assert b["net_input"]["src_tokens"].tolist() == [[4, 5, 6, 7, 2], [1, 1, 4, 5, 2], [1, 1, 1, 4, 2]]
    assert b["net_input"]["src_lengths"].tolist() == [5, 3, 2]
    assert b["net_input"]["prev_output_tokens"].tolist() == [[2, 6, 1, 1, 1, 1], [2, 5, 1, 1, 1, 1],
                                                             [2, 4, 5, 6, 7, 8]]
    assert b["target"].tolist() == [[6, 2, 1, 1, 1, 1], [5, 2, 1, 1, 1, 1], [4, 5, 6, 7, 8, 2]]
    assert ds.ordered_indices().tolist() == [2, 0, 1]
    kept, dropped = ds.filter_indices_by_size(np.arange(3), (6, 4))
    assert kept.tolist() == [0, 1] and dropped == [2]


def test_concat_sample_ratios_wrap_each_dataset():
    a = ListDataset([10, 11, 12], np.array([1, 2, 3]))
    b = ListDataset([20, 21], np.array([5, 6]))
    d = ConcatDataset([a, b], sample_ratios=[2, 1.5])
    assert len(d) == 9 and [d[i] for i in range(9)] == [10, 11, 12, 10, 11, 12, 20, 21, 20]
    assert d.sizes.tolist() == [1, 2, 3, 1, 2, 3, 5, 6, 5] and d.size(8) == 5


def test_resampling_depends_on_seed_and_epoch_only():
    base = ListDataset(list(range(10)), np.arange(10))
    one, two = ResamplingDataset(base, size_ratio=2, seed=3), ResamplingDataset(base, size_ratio=2, seed=3)
    one.set_epoch(4)
    two.set_epoch(2)
    two.set_epoch(4)  # another history, the same epoch: the same sample
    assert len(one) == 20 and [one[i] for i in range(20)] == [two[i] for i in range(20)]
    one.set_epoch(5)
    assert [one[i] for i in range(20)] != [two[i] for i in range(20)]


def test_multi_corpus_takes_its_share_of_each_corpus():
    small = ListDataset([{"corpus": "a", "i": i} for i in range(10)], np.ones(10, dtype=np.int64))
    big = ListDataset([{"corpus": "b", "i": i} for i in range(30)], np.ones(30, dtype=np.int64))
    m = MultiCorpusDataset(OrderedDict(a=small, b=big), distribution=[0.5, 0.5], seed=1)
    m.set_epoch(1)
    items = [dict(m[int(i)]) for i in m.ordered_indices()]
    assert len(items) == 40 and sum(x["corpus"] == "a" for x in items) == 20  # 2 whole copies of the small one
    assert sorted(x["i"] for x in items if x["corpus"] == "a") == sorted(list(range(10)) * 2)
