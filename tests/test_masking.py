"""Masking equals fairseq's MaskTokensDataset draw for draw (fixture), plus whole-word/freq rules."""
import json

import numpy as np
import pytest
import torch

from fairseq.data import Dictionary, MMapIndexedDataset, PrependTokenDataset, TokenBlockDataset
from fairseq.data.masking import mask_tokens, replacement_weights, sample_seed
from fairseq.tasks.masked_lm import masked_lm_dataset


def build_valid(peer_dir, **kw):
    """The valid split as the masked_lm task builds it (blocks of 127 + <s>), and the dictionary."""
    d = Dictionary.load(str(peer_dir / "data-bin" / "dict.txt"))
    mask_idx = d.add_symbol("<mask>")
    ds = MMapIndexedDataset(str(peer_dir / "data-bin" / "valid"))
    blocks = PrependTokenDataset(TokenBlockDataset(ds, ds.sizes, 127, d.pad(), d.eos(), "complete"), d.bos())
    return masked_lm_dataset(blocks, d, mask_idx, seed=1, **kw), d


def _masked(ds):
    """The MaskTokensDataset pair (source, target) inside the batch definition."""
    fields = ds.dataset.defn
    return fields["net_input.src_tokens"].dataset, fields["target"].dataset


@pytest.fixture(scope="module")
def ref(peer_dir):
    return json.loads((peer_dir / "reference" / "masking_valid_first64.json").read_text())


def _check(ds, samples):
    src, _ = _masked(ds)
    for s in samples:
        item = ds[s["index"]]
        assert ds.size(s["index"]) == s["length"]
        assert src.dataset[s["index"]].tolist() == s["original"]
        assert item["net_input.src_tokens"].tolist() == s["source"], s["index"]
        assert item["target"].tolist() == s["target"], s["index"]
        assert item["id"] == s["index"]


def test_masking_equals_fairseq_epoch1(peer_dir, ref):
    ds, d = build_valid(peer_dir)
    assert _masked(ds)[0].mask_idx == ref["mask_idx"] == 7712 and len(d) == ref["vocab_size_with_mask"]
    ds.set_epoch(1)
    _check(ds, ref["samples"])


@pytest.mark.parametrize("epoch,key", [(0, "extra_epoch0_first8"), (2, "extra_epoch2_first8")])
def test_masking_equals_fairseq_other_epochs(peer_dir, ref, epoch, key):
    ds, _ = build_valid(peer_dir)
    if epoch:
        ds.set_epoch(epoch)  # epoch 0 = set_epoch never called, as in fairseq
    _check(ds, ref[key])


def test_counts_in_reference_are_consistent(peer_dir, ref):
    ds, _ = build_valid(peer_dir)
    ds.set_epoch(1)
    for s in ref["samples"][:16]:
        src, tgt, orig = (np.array(s[k]) for k in ("source", "target", "original"))
        sel = tgt != 1
        assert sel.sum() == s["num_selected"]
        assert (src[sel] == 7712).sum() == s["num_mask_token"]


def test_whole_word_masking_masks_whole_words():
    rng = np.random.RandomState(3)
    vocab = 50
    begins = rng.rand(vocab) < 0.5
    begins[:4] = True
    weights = replacement_weights([1] * vocab, 4)
    for index in range(40):
        item = np.concatenate([[0], rng.randint(4, vocab - 1, size=60)])
        src, tgt = mask_tokens(item, 1, 1, index, vocab - 1, 1, weights, 0.3, 0.1, 0.1, begins)
        word_id = np.cumsum(begins[item]) - 1
        selected = tgt != 1
        for w in np.unique(word_id):
            in_word = selected[word_id == w]
            assert in_word.all() or not in_word.any(), "a word was partly selected"
        # the number of selected words follows fairseq's draw: int(p * nwords + U)
        rs = np.random.RandomState(sample_seed(1, 1, index))
        nwords = int(begins[item].sum())
        assert len(np.unique(word_id[selected])) == int(0.3 * nwords + rs.rand())


def test_whole_word_equals_slow_reference():
    """Reference: fairseq's algorithm transcribed literally with the global numpy RNG."""
    rng = np.random.RandomState(5)
    vocab = 30
    begins = rng.rand(vocab) < 0.6
    begins[:4] = True
    counts = rng.randint(0, 100, size=vocab)
    for freq in (False, True):
        weights = replacement_weights(counts, 4, freq)
        for index in range(20):
            item = np.concatenate([[0], rng.randint(4, vocab - 1, size=40)])
            src, tgt = mask_tokens(item, 7, 3, index, vocab - 1, 1, weights, 0.2, 0.1, 0.1, begins)
            state = np.random.get_state()
            np.random.seed(int(hash((7, 3, index)) % 1e6))
            wb = begins[item]
            idx = np.flatnonzero(wb)
            lens = [len(x) for x in np.split(wb, idx)[1:]]
            sz = len(idx)
            mask = np.full(sz, False)
            mask[np.random.choice(sz, int(0.2 * sz + np.random.rand()), replace=False)] = True
            tgt_ref = np.full(len(item), 1)
            m_tok = np.repeat(mask, lens)
            tgt_ref[m_tok] = item[m_tok]
            rou = mask & (np.random.rand(sz) < 0.2)
            dec = np.random.rand(sz) < 0.5
            unmask, rand = rou & dec, rou & ~dec
            mask = np.repeat(mask ^ unmask, lens)
            ref = item.copy()
            ref[mask] = vocab - 1
            if rand.sum() > 0:
                rand = np.repeat(rand, lens)
                ref[rand] = np.random.choice(vocab, rand.sum(), p=weights)
            np.random.set_state(state)
            np.testing.assert_array_equal(src, ref)
            np.testing.assert_array_equal(tgt, tgt_ref)


def test_freq_weighted_weights():
    w = replacement_weights([5, 5, 5, 5, 2, 0, 6], 4, freq_weighted=True)
    np.testing.assert_allclose(w, [0, 0, 0, 0, 0.25, 0, 0.75])
    u = replacement_weights([5] * 8, 4)
    np.testing.assert_allclose(u, [0] * 4 + [0.25] * 4)


def test_collater_and_empty(peer_dir):
    ds, _ = build_valid(peer_dir)
    ds.set_epoch(1)
    b = ds.collater([ds[3], ds[7]])
    assert b["nsentences"] == 2 and b["ntokens"] == int(ds.size(3) + ds.size(7))
    assert b["net_input"]["src_tokens"].shape == (2, int(max(ds.size(3), ds.size(7))))
    assert b["target"].dtype == torch.long and b["id"].tolist() == [3, 7]
    assert ds.collater([]) == {}


def test_mask_already_present_is_an_error():
    with pytest.raises(ValueError, match="mask"):
        mask_tokens(np.array([0, 9, 2]), 1, 1, 0, 9, 1, replacement_weights([1] * 10, 4))
