"""fairseq's public data API beyond what fairseq's own tests cover: collate_tokens' options, the wrappers,
the epoch iterator's fairseq options, metrics state, and checkpoint_wrapper outside training."""
import numpy as np
import pytest
import torch

from fairseq import metrics, utils
from fairseq.data import (
    IdDataset,
    ListDataset,
    NestedDictionaryDataset,
    NumelDataset,
    NumSamplesDataset,
    OffsetTokensDataset,
    RawLabelDataset,
    RightPadDataset,
    SortDataset,
    StripTokenDataset,
    data_utils,
    iterators,
)
from fairseq.modules.checkpoint_activations import checkpoint_wrapper, unwrap_checkpoint


def test_collate_tokens_options():
    v = [torch.tensor([5, 6, 2]), torch.tensor([7, 2])]
    assert data_utils.collate_tokens(v, 1).tolist() == [[5, 6, 2], [7, 2, 1]]
    assert data_utils.collate_tokens(v, 1, left_pad=True).tolist() == [[5, 6, 2], [1, 7, 2]]
    assert data_utils.collate_tokens(v, 1, move_eos_to_beginning=True).tolist() == [[2, 5, 6], [2, 7, 1]]
    assert data_utils.collate_tokens(v, 1, eos_idx=9, move_eos_to_beginning=True).tolist() == [[9, 5, 6], [9, 7, 1]]
    assert data_utils.collate_tokens(v, 1, pad_to_length=5).shape == (2, 5)
    assert data_utils.collate_tokens(v, 1, pad_to_multiple=4, pad_to_bsz=3).tolist() == [
        [5, 6, 2, 1], [7, 2, 1, 1], [1, 1, 1, 1]]


def test_numpy_seed_restores_the_global_state():
    np.random.seed(4)
    before = np.random.get_state()[1].copy()
    with data_utils.numpy_seed(1, 2, 3):
        a = np.random.rand()
    with data_utils.numpy_seed(1, 2, 3):
        b = np.random.rand()
    assert a == b and np.array_equal(np.random.get_state()[1], before)


def test_nested_dictionary_sort_and_small_wrappers():
    items = [torch.tensor([4, 5, 6, 2]), torch.tensor([7, 2]), torch.tensor([8, 9, 2])]
    src = ListDataset(items, sizes=np.array([4, 2, 3]))
    ds = SortDataset(NestedDictionaryDataset({
        "id": IdDataset(),
        "net_input": {"src_tokens": RightPadDataset(src, pad_idx=1), "src_lengths": NumelDataset(src)},
        "target": RawLabelDataset([0.5, 1.5, 2.5]),
        "nsentences": NumSamplesDataset(),
        "ntokens": NumelDataset(src, reduce=True),
    }, sizes=[src.sizes]), sort_order=[np.array([0, 1, 2]), src.sizes])
    assert ds.ordered_indices().tolist() == [1, 2, 0] and len(ds) == 3
    b = ds.collater([ds[i] for i in ds.ordered_indices()[:2]])
    assert b["id"].tolist() == [1, 2] and b["nsentences"] == 2 and b["ntokens"] == 5
    assert b["net_input"]["src_tokens"].tolist() == [[7, 2, 1], [8, 9, 2]]
    assert b["net_input"]["src_lengths"].tolist() == [2, 3] and b["target"].tolist() == [1.5, 2.5]
    kept, ignored = ds.filter_indices_by_size(np.array([0, 1, 2]), 3)
    assert kept.tolist() == [1, 2] and ignored == [0]
    assert ds.collater([]) == {}
    assert OffsetTokensDataset(src, -4)[0].tolist() == [0, 1, 2, -2]
    assert StripTokenDataset(ListDataset([torch.tensor([2, 5, 2, 2])]), 2)[0].tolist() == [5]


def test_epoch_iterator_callable_sampler_buffer_and_remainder():
    ds = ListDataset(list(range(10)))
    seen = []

    def sampler(dataset, epoch):
        seen.append(epoch)
        return [list(range(i, min(i + 3, 10))) for i in range(0, 10, 3)]

    it = iterators.EpochBatchIterator(ds, ds.collater, sampler, seed=1, buffer_size=2, skip_remainder_batch=True)
    first = list(it.next_epoch_itr(shuffle=False))
    assert first == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]  # the last batch is dropped
    list(it.next_epoch_itr(shuffle=False))
    assert seen == [1, 2]  # asked again for the new epoch


def test_epoch_iterator_leaves_torch_rng_alone():
    ds = ListDataset(list(range(6)))
    torch.manual_seed(0)
    state = torch.get_rng_state()
    list(iterators.EpochBatchIterator(ds, ds.collater, [[0, 1], [2, 3], [4, 5]]).next_epoch_itr())
    assert torch.equal(state, torch.get_rng_state())


def test_metrics_state_roundtrip_and_derived():
    with metrics.aggregate("test_data_api") as agg:
        metrics.log_scalar("loss", 3.0, weight=2, round=3)
        metrics.log_scalar("loss", 6.0, weight=1, round=3)
        metrics.log_derived("ppl", lambda m: utils.get_perplexity(m["loss"].avg))
    assert agg.get_smoothed_values() == {"loss": 4.0, "ppl": 16.0}
    state = metrics.state_dict()
    metrics.reset()
    metrics.load_state_dict(state)
    assert metrics.get_smoothed_values("test_data_api")["loss"] == 4.0


def test_checkpoint_wrapper_only_when_training_and_unwrap():
    torch.manual_seed(0)
    m = checkpoint_wrapper(torch.nn.Linear(3, 3))
    x = torch.randn(2, 3)
    with torch.no_grad():
        y = m(x)
    m.eval()
    assert torch.equal(m(x), y)
    unwrap_checkpoint(m)
    assert not hasattr(m, "precheckpoint_forward") and torch.equal(m(x), y)


def test_batch_by_size_vec_rejects_a_sample_over_max_tokens():
    with pytest.raises(ValueError, match="max_tokens=5"):
        data_utils.batch_by_size(np.arange(3), None, num_tokens_vec=np.array([1, 9, 2]), max_tokens=5)
