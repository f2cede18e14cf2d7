"""Token blocks: equal to fairseq's TokenBlockDataset on the fixture, Cython == fallback == slow reference."""
import numpy as np
import pytest
import torch

from fairseq.data import token_blocks
from fairseq.data.indexed_dataset import MMapIndexedDataset
from fairseq.data import TokenBlockDataset
from fairseq.data.token_blocks import build_blocks

MODES = ["none", "complete", "complete_doc", "eos"]


def slow_reference(sizes, block_size, mode, sep=1):
    """Sentence-by-sentence greedy packing, written from the spec without any cleverness."""
    sizes = [int(s) for s in sizes]
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    total = int(starts[-1])
    if mode == "none":
        return [(s, min(s + block_size, total)) for s in range(0, total, block_size)]
    if mode == "eos":
        return [(int(starts[i]), int(starts[i + 1])) for i in range(len(sizes))]
    out, tok, cur = [], 0, 0
    keep = (lambda c: c > 1) if mode == "complete_doc" else (lambda c: c > 0)
    for s in sizes:
        if mode == "complete_doc" and s == sep:
            if keep(cur):
                out.append((tok, tok + cur))
            tok, cur = tok + cur + s, 0
            continue
        if cur + s <= block_size or cur == 0:
            cur += s
        else:
            if keep(cur):
                out.append((tok, tok + cur))
            tok, cur = tok + cur, s
    if keep(cur):
        out.append((tok, tok + cur))
    return out


@pytest.fixture(scope="module")
def ref(peer_dir):
    return np.load(peer_dir / "reference" / "token_blocks.npz")


@pytest.mark.parametrize("split", ["valid", "train2000"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("use_fast", [True, False])
def test_blocks_equal_fairseq(ref, split, mode, use_fast):
    sizes = ref[f"{split}__sentence_sizes"]
    sl, b2d = build_blocks(sizes, 127, mode, use_fast=use_fast)
    np.testing.assert_array_equal(sl, ref[f"{split}__{mode}__slice_indices"])
    np.testing.assert_array_equal(b2d, ref[f"{split}__{mode}__block_to_dataset_index"])
    assert sl.dtype == np.int64 and b2d.dtype == np.int64


def test_cython_extension_is_built():
    assert token_blocks.has_fast_path(), "run `pip install -e . --no-build-isolation` to build _token_blocks"


@pytest.mark.parametrize("mode", ["complete", "complete_doc", "none"])
def test_random_sizes_match_slow_reference(mode):
    rng = np.random.RandomState(0)
    for trial in range(30):
        n = rng.randint(0, 60)
        sizes = rng.choice([0, 1, 1, 2, 3, 5, 8, 13, 40], size=n).astype(np.int64)
        bs = int(rng.randint(1, 20))
        want = np.array(slow_reference(sizes, bs, mode), dtype=np.int64).reshape(-1, 2)
        for fast in (True, False):
            sl, b2d = build_blocks(sizes, bs, mode, use_fast=fast)
            np.testing.assert_array_equal(sl, want, err_msg=f"trial {trial} fast={fast}")
        # both block_to_dataset_index implementations agree on every block
        np.testing.assert_array_equal(
            build_blocks(sizes, bs, mode, use_fast=True)[1], build_blocks(sizes, bs, mode, use_fast=False)[1]
        )


def test_dataset_items_are_stream_slices(peer_dir):
    ds = MMapIndexedDataset(str(peer_dir / "data-bin" / "valid"))
    stream = torch.cat([ds[i] for i in range(len(ds))])
    for mode in MODES:
        tb = TokenBlockDataset(ds, ds.sizes, 127, pad=1, eos=2, break_mode=mode)
        assert len(tb) == {"none": 285, "complete": 331, "complete_doc": 354, "eos": 1128}[mode]
        for i in list(range(0, len(tb), 7)) + [len(tb) - 1]:
            s, e = tb.slice_indices[i]
            assert torch.equal(tb[i], stream[s:e])
        np.testing.assert_array_equal(tb.sizes, tb.slice_indices[:, 1] - tb.slice_indices[:, 0])


def test_generic_dataset_path_matches_direct(peer_dir):
    ds = MMapIndexedDataset(str(peer_dir / "data-bin" / "valid"))
    items = [ds[i] for i in range(200)]
    sizes = ds.sizes[:200]
    a = TokenBlockDataset(items, sizes, 50, 1, 2, "none")
    b = TokenBlockDataset(ds, ds.sizes, 50, 1, 2, "none")
    for i in range(len(a) - 1):
        assert torch.equal(a[i], b[i])


def test_bad_arguments():
    with pytest.raises(ValueError, match="sample-break-mode"):
        build_blocks([1, 2], 5, "sentence")
    with pytest.raises(ValueError, match="block size"):
        build_blocks([1, 2], 0, "complete")


def test_size_dtypes_agree(ref):
    sizes = ref["valid__sentence_sizes"]
    for mode in ("complete", "complete_doc"):
        want = build_blocks(sizes, 127, mode)
        for dt in (np.int32, np.uint16, np.uint32):
            got = build_blocks(sizes.astype(dt), 127, mode)
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])
