"""mmap .bin/.idx: reading the fixture, writing identical bytes, and clear errors on bad files."""
import shutil

import numpy as np
import pytest
import torch

from fairseq.data.indexed_dataset import (
    MMapIndexedDataset,
    MMapIndexedDatasetBuilder,
    best_fitting_dtype,
    dataset_exists,
    dtype_code,
)


def test_reads_fixture(peer_dir):
    prefix = str(peer_dir / "data-bin" / "valid")
    assert dataset_exists(prefix)
    ds = MMapIndexedDataset(prefix)
    assert len(ds) == 1128 and ds.dtype == np.uint16
    assert ds.sizes.dtype == np.int32 and int(ds.sizes.sum()) == 36089
    raw = np.fromfile(prefix + ".bin", dtype=np.uint16)
    off = 0
    for i in range(len(ds)):
        item = ds[i]
        assert item.dtype == torch.int64 and item[-1] == 2
        assert item.tolist() == raw[off : off + ds.sizes[i]].tolist()
        off += ds.sizes[i]
    assert np.array_equal(ds.read_span(3, 2, 50), raw[int(ds.sizes[:3].sum()) + 2 :][:50])


def test_rewrite_is_byte_identical(peer_dir, tmp_path):
    prefix = str(peer_dir / "data-bin" / "valid")
    ds = MMapIndexedDataset(prefix)
    b = MMapIndexedDatasetBuilder(str(tmp_path / "a.bin"), best_fitting_dtype(7712))
    for i in range(len(ds)):
        b.add_item(ds[i])
    b.finalize(str(tmp_path / "a.idx"))
    for ext in ("bin", "idx"):
        assert (tmp_path / f"a.{ext}").read_bytes() == open(f"{prefix}.{ext}", "rb").read()
    # merge_file_ of two halves gives the same bytes too
    h = MMapIndexedDatasetBuilder(str(tmp_path / "h1.bin"), np.uint16)
    for i in range(500):
        h.add_item(ds[i])
    h.finalize(str(tmp_path / "h1.idx"))
    h = MMapIndexedDatasetBuilder(str(tmp_path / "h2.bin"), np.uint16)
    for i in range(500, len(ds)):
        h.add_item(ds[i].numpy())
    h.finalize(str(tmp_path / "h2.idx"))
    m = MMapIndexedDatasetBuilder(str(tmp_path / "m.bin"), np.uint16)
    m.merge_file_(str(tmp_path / "h1"))
    m.merge_file_(str(tmp_path / "h2"))
    m.finalize(str(tmp_path / "m.idx"))
    for ext in ("bin", "idx"):
        assert (tmp_path / f"m.{ext}").read_bytes() == open(f"{prefix}.{ext}", "rb").read()


def test_dtypes_and_codes(tmp_path):
    assert best_fitting_dtype(7712) == np.uint16
    assert best_fitting_dtype(65500) == np.uint32
    assert best_fitting_dtype(2**32) == np.int64
    assert dtype_code(np.float64) == 6 and dtype_code(np.uint16) == 8 and dtype_code(np.int64) == 5
    for dt in (np.uint8, np.int32, np.int64, np.uint32):
        b = MMapIndexedDatasetBuilder(str(tmp_path / "x.bin"), dt)
        b.add_item(torch.tensor([5, 6, 7]))
        b.add_item(np.array([], dtype=np.int64))
        b.add_item([9])
        b.finalize(str(tmp_path / "x.idx"))
        ds = MMapIndexedDataset(str(tmp_path / "x"))
        assert ds.dtype == dt and ds.sizes.tolist() == [3, 0, 1]
        assert [ds[i].tolist() for i in range(3)] == [[5, 6, 7], [], [9]]
        assert (tmp_path / "x.idx").stat().st_size == 26 + 12 * 3


@pytest.fixture
def copy(peer_dir, tmp_path):
    for ext in ("bin", "idx"):
        shutil.copy(peer_dir / "data-bin" / f"valid.{ext}", tmp_path / f"valid.{ext}")
        (tmp_path / f"valid.{ext}").chmod(0o644)
    return tmp_path / "valid"


def test_missing_files(copy):
    (copy.parent / "valid.bin").unlink()
    with pytest.raises(ValueError, match=r"valid.bin"):
        MMapIndexedDataset(str(copy))
    with pytest.raises(ValueError, match=r"nope.idx"):
        MMapIndexedDataset(str(copy.parent / "nope"))


def test_bad_magic(copy):
    idx = copy.parent / "valid.idx"
    data = bytearray(idx.read_bytes())
    data[0:3] = b"XXX"
    idx.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"valid.idx: bad magic"):
        MMapIndexedDataset(str(copy))


def test_truncated_index(copy):
    idx = copy.parent / "valid.idx"
    idx.write_bytes(idx.read_bytes()[:-5])
    with pytest.raises(ValueError, match=r"valid.idx: truncated"):
        MMapIndexedDataset(str(copy))
    idx.write_bytes(idx.read_bytes()[:20])
    with pytest.raises(ValueError, match=r"valid.idx: truncated"):
        MMapIndexedDataset(str(copy))


def test_bin_too_short(copy):
    b = copy.parent / "valid.bin"
    b.write_bytes(b.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"valid.bin: size/pointer mismatch"):
        MMapIndexedDataset(str(copy))
