"""fairseq's mmap indexed dataset (`--dataset-impl mmap`): `<prefix>.idx` + `<prefix>.bin`.

Layout of .idx (little-endian): 9-byte magic, u64 version 1, u8 dtype code, u64 N, N int32 sizes,
N int64 byte pointers. The .bin is the concatenated token ids with no header. The reader maps both
files and never loads the corpus; the writer produces byte-identical files to fairseq 0.12.2.
"""
from __future__ import annotations

import os
import shutil
import struct
import tempfile
from typing import Callable, Iterable, Optional, Union

import numpy as np
import torch

from fairseq.data import dataset_commit

MAGIC = b"MMIDIDX\x00\x00"
VERSION = 1
HEADER_LEN = len(MAGIC) + 8 + 1 + 8  # = 26

DTYPES = {
    1: np.uint8,
    2: np.int8,
    3: np.int16,
    4: np.int32,
    5: np.int64,
    6: np.float64,
    7: np.double,
    8: np.uint16,
    9: np.uint32,
    10: np.uint64,
}


def dtype_code(dtype) -> int:
    """First code whose dtype matches (float64 -> 6, as fairseq)."""
    dtype = np.dtype(dtype)
    for k, v in DTYPES.items():
        if np.dtype(v) == dtype:
            return k
    raise ValueError(f"unsupported indexed-dataset dtype {dtype}")


def best_fitting_int_dtype(max_int_to_represent) -> np.dtype:
    if max_int_to_represent is None:
        return np.dtype(np.uint32)
    if max_int_to_represent < 65500:
        return np.dtype(np.uint16)
    if max_int_to_represent < 4294967295:
        return np.dtype(np.uint32)
    return np.dtype(np.int64)


def best_fitting_dtype(vocab_size) -> np.dtype:
    """The dtype fairseq-preprocess picks for a vocabulary of `vocab_size` symbols."""
    return best_fitting_int_dtype(vocab_size)


def index_file_path(prefix: str) -> str:
    return prefix + ".idx"


def data_file_path(prefix: str) -> str:
    return prefix + ".bin"


def dataset_exists(prefix: str) -> bool:
    return os.path.exists(index_file_path(prefix)) and os.path.exists(data_file_path(prefix))


class MMapIndex:
    """Parsed .idx: dtype, sizes (int32) and pointers (int64), both memory-mapped views."""

    def __init__(self, path: str):
        if not os.path.isfile(path):
            raise ValueError(f"index file not found: {path}")
        file_len = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(HEADER_LEN)
        if len(head) < len(MAGIC) or head[: len(MAGIC)] != MAGIC:
            raise ValueError(f"{path}: bad magic, not an mmap indexed dataset index (expected {MAGIC!r})")
        if len(head) < HEADER_LEN:
            raise ValueError(f"{path}: truncated index header ({file_len} bytes)")
        (version,) = struct.unpack("<Q", head[9:17])
        if version != VERSION:
            raise ValueError(f"{path}: unsupported index version {version}")
        (code,) = struct.unpack("<B", head[17:18])
        if code not in DTYPES:
            raise ValueError(f"{path}: unknown dtype code {code}")
        (n,) = struct.unpack("<Q", head[18:26])
        expected = HEADER_LEN + 12 * n
        if file_len != expected:
            raise ValueError(
                f"{path}: truncated or corrupt index: {file_len} bytes, expected {expected} for {n} entries"
            )
        self.path = path
        self.dtype = np.dtype(DTYPES[code])
        self._len = n
        if n == 0:
            self.sizes = np.zeros(0, dtype=np.int32)
            self.pointers = np.zeros(0, dtype=np.int64)
        else:
            mm = np.memmap(path, mode="r", dtype=np.uint8)
            self.sizes = np.frombuffer(mm, dtype=np.int32, count=n, offset=HEADER_LEN)
            self.pointers = np.frombuffer(mm, dtype=np.int64, count=n, offset=HEADER_LEN + 4 * n)
            self._mm = mm

    def __len__(self) -> int:
        return self._len


def check_layout(index: MMapIndex, bin_path: str, bin_len: int, block: int = 1 << 22) -> None:
    """The index describes exactly its .bin: sizes >= 0, each pointer the sum of the sizes before it,
    and the total the .bin's length. Read in blocks, so any index is checked in bounded memory.

    This is what catches an .idx of another split beside a .bin, or an .idx whose dtype byte changed.
    """
    itemsize = index.dtype.itemsize
    total = 0
    for i in range(0, len(index), block):
        sizes = np.asarray(index.sizes[i : i + block], dtype=np.int64)
        if (sizes < 0).any():
            k = int(np.flatnonzero(sizes < 0)[0])
            raise ValueError(
                f"{index.path}: sentence {i + k} has a negative size {int(sizes[k])}; the index is corrupt"
            )
        ends = np.cumsum(sizes * itemsize) + total
        starts = ends - sizes * itemsize
        bad = np.flatnonzero(index.pointers[i : i + block] != starts)
        if bad.size:
            k = int(bad[0])
            raise ValueError(
                f"{index.path}: pointer of sentence {i + k} is {int(index.pointers[i + k])}, but the sizes before it "
                f"give {int(starts[k])} for {index.dtype} items; the index is corrupt or its dtype byte was changed"
            )
        total = int(ends[-1])
    if total != bin_len:
        raise ValueError(
            f"{bin_path}: size/pointer mismatch with {index.path}: the index describes {total // itemsize} tokens of "
            f"{index.dtype} ({total} bytes) but the .bin has {bin_len} bytes (an .idx of another split, or a changed "
            f"dtype byte?)"
        )


class MMapIndexedDataset(torch.utils.data.Dataset):
    """Read-only view of a binarized split; ds[i] -> int64 LongTensor copy of sentence i."""

    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix
        idx_path, bin_path = index_file_path(prefix), data_file_path(prefix)
        dataset_commit.check_complete(os.path.dirname(idx_path))  # not half of an interrupted fairseq-preprocess
        self._index = MMapIndex(idx_path)
        if not os.path.isfile(bin_path):
            raise ValueError(f"data file not found: {bin_path}")
        bin_len = os.path.getsize(bin_path)
        check_layout(self._index, bin_path, bin_len)
        self._bin = np.memmap(bin_path, mode="r", dtype=self._index.dtype) if bin_len > 0 else np.zeros(
            0, dtype=self._index.dtype
        )
        # Ids must stay below this (set by fairseq.data.checks once the dictionary is known): every read checks.
        self.vocab_size: Optional[int] = None
        # Token offset of each sentence: lets callers read spans that cross sentence boundaries.
        ptrs = self._index.pointers
        self._tok_ptr = ptrs // self._index.dtype.itemsize if len(ptrs) else np.zeros(0, dtype=np.int64)

    @property
    def dtype(self) -> np.dtype:
        return self._index.dtype

    @property
    def sizes(self) -> np.ndarray:
        return self._index.sizes

    def __len__(self) -> int:
        return len(self._index)

    def size(self, i: int) -> int:
        return int(self._index.sizes[i])

    def num_tokens(self, i: int) -> int:
        return int(self._index.sizes[i])

    def __getitem__(self, i: int) -> torch.Tensor:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {self.prefix} ({n} sentences)")
        start = int(self._tok_ptr[i])
        arr = np.array(self._bin[start : start + int(self._index.sizes[i])], dtype=np.int64)
        self._check_ids(arr, start)
        return torch.from_numpy(arr)

    def read_span(self, sentence: int, offset: int, length: int) -> np.ndarray:
        """`length` tokens starting `offset` tokens into `sentence`, as int64 (may cross sentences).

        Valid because fairseq writes sentences back to back, so pointers are cumulative.
        """
        start = int(self._tok_ptr[sentence]) + offset
        arr = np.array(self._bin[start : start + length], dtype=np.int64)
        self._check_ids(arr, start)
        return arr

    def sentence_at(self, token_offset: int) -> int:
        """The sentence that holds the token at `token_offset` in the .bin."""
        return int(np.searchsorted(self._tok_ptr, token_offset, side="right")) - 1

    def _check_ids(self, arr: np.ndarray, start: int) -> None:
        """A read that finds an id outside [0, vocab_size) (the .bin changed under us) names file and sentence."""
        if self.vocab_size is None or len(arr) == 0:
            return
        if int(arr.max()) >= self.vocab_size or int(arr.min()) < 0:
            k = int(np.flatnonzero((arr >= self.vocab_size) | (arr < 0))[0])
            raise ValueError(
                f"{data_file_path(self.prefix)}: token id {int(arr[k])} in sentence {self.sentence_at(start + k)} "
                f"is not below the dictionary size {self.vocab_size} (the file changed after it was checked?)"
            )

    @property
    def supports_prefetch(self) -> bool:
        return False

    @staticmethod
    def exists(prefix: str) -> bool:
        return dataset_exists(prefix)


class MMapIndexedDatasetBuilder:
    """Streams sentences to a .bin; `finalize` writes the .idx.

    Sentence sizes are buffered and, past SIZES_IN_MEMORY of them, spilled to an unnamed temporary
    file beside the output, so building a corpus of any size takes bounded memory.
    """

    SIZES_IN_MEMORY = 1 << 18

    def __init__(self, out_file: str, dtype=np.int64):
        self._path = out_file
        self._file = open(out_file, "wb")
        self._dtype = np.dtype(dtype)
        self._pending: list = []  # python ints from add_item
        self._buffered: list = []  # int32 arrays
        self._n_buffered = 0
        self._spill = None
        self._n_spilled = 0

    def add_item(self, tensor: Union[torch.Tensor, np.ndarray, list]) -> None:
        if isinstance(tensor, torch.Tensor):
            tensor = tensor.numpy()
        arr = np.asarray(tensor).astype(self._dtype, copy=False)
        self._file.write(arr.tobytes(order="C"))
        self._pending.append(arr.size)
        if len(self._pending) >= 4096:
            self._add_sizes(np.asarray(self._pending, dtype=np.int32))
            self._pending = []

    def add_items(self, flat: np.ndarray, sizes: np.ndarray) -> None:
        """Append many sentences at once: `flat` is their concatenation, `sizes` their lengths."""
        self._file.write(np.ascontiguousarray(flat, dtype=self._dtype).tobytes())
        self._flush_pending()
        self._add_sizes(np.asarray(sizes, dtype=np.int32))

    def _flush_pending(self) -> None:
        if self._pending:
            self._add_sizes(np.asarray(self._pending, dtype=np.int32))
            self._pending = []

    def _add_sizes(self, sizes: np.ndarray) -> None:
        self._buffered.append(sizes)
        self._n_buffered += len(sizes)
        if self._n_buffered >= self.SIZES_IN_MEMORY:
            self._spill_buffer()

    def _spill_buffer(self) -> None:
        if self._spill is None:
            self._spill = tempfile.TemporaryFile(dir=os.path.dirname(os.path.abspath(self._path)))
        for arr in self._buffered:
            self._spill.write(arr.tobytes())
        self._n_spilled += self._n_buffered
        self._buffered, self._n_buffered = [], 0

    def _size_blocks(self):
        """All sizes so far, in order, as int32 arrays of bounded length."""
        self._flush_pending()
        if self._spill is not None:
            self._spill.seek(0)
            while True:
                raw = self._spill.read(4 * self.SIZES_IN_MEMORY)
                if not raw:
                    break
                yield np.frombuffer(raw, dtype=np.int32)
        yield from self._buffered

    def merge_file_(self, another_prefix: str) -> None:
        """Append another dataset (same dtype) by copying its .bin and its sizes."""
        index = MMapIndex(index_file_path(another_prefix))
        if index.dtype != self._dtype:
            raise ValueError(
                f"{index_file_path(another_prefix)}: dtype {index.dtype} differs from builder dtype {self._dtype}"
            )
        self._flush_pending()
        with open(index.path, "rb") as f:  # plain reads: a memory map would keep the pages it touched resident
            f.seek(HEADER_LEN)
            for i in range(0, len(index), self.SIZES_IN_MEMORY):
                self._add_sizes(np.fromfile(f, dtype=np.int32, count=min(self.SIZES_IN_MEMORY, len(index) - i)))
        with open(data_file_path(another_prefix), "rb") as f:
            shutil.copyfileobj(f, self._file, 1 << 22)

    def close(self) -> None:
        """Close the files without writing an index (after an error)."""
        self._file.close()
        if self._spill is not None:
            self._spill.close()
            self._spill = None

    def finalize(self, index_file: str) -> None:
        self._file.close()
        self._flush_pending()
        n = self._n_spilled + self._n_buffered
        try:
            write_index(index_file, self._dtype, n, self._size_blocks)
        finally:
            self.close()


def write_index(path: str, dtype, n: int, size_blocks: Callable[[], Iterable[np.ndarray]]) -> None:
    """Write an .idx for `n` sentences; `size_blocks()` yields their sizes in order as int32 arrays.

    It is called twice (sizes, then the byte pointers as their running sum), so any number of
    sentences is written in bounded memory.
    """
    itemsize = np.dtype(dtype).itemsize
    with open(path, "wb") as f:
        f.write(MAGIC)
        f.write(struct.pack("<Q", VERSION))
        f.write(struct.pack("<B", dtype_code(dtype)))
        f.write(struct.pack("<Q", n))
        for block in size_blocks():
            f.write(np.asarray(block, dtype=np.int32).tobytes())
        offset = 0
        for block in size_blocks():
            for i in range(0, len(block), 1 << 16):  # small slices: the int64 temporaries stay small
                nbytes = np.asarray(block[i : i + (1 << 16)], dtype=np.int64) * itemsize
                ends = np.cumsum(nbytes) + offset
                f.write((ends - nbytes).tobytes())
                offset = int(ends[-1])


def make_builder(out_file: str, impl: str = "mmap", vocab_size=None) -> MMapIndexedDatasetBuilder:
    """A builder whose dtype fits ids below `vocab_size` (fairseq's make_builder)."""
    if impl != "mmap":
        raise ValueError(f"--dataset-impl {impl!r} is not supported; only 'mmap'")
    return MMapIndexedDatasetBuilder(out_file, dtype=best_fitting_int_dtype(vocab_size))


def make_dataset(prefix: str, impl: str = "mmap") -> MMapIndexedDataset:
    if impl != "mmap":
        raise ValueError(f"--dataset-impl {impl!r} is not supported; only 'mmap'")
    return MMapIndexedDataset(prefix)
