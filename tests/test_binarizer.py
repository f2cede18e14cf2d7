"""fairseq.binarizer: fairseq's public API; streamed, same bytes for any worker count, nothing left on error."""
import os
import random

import numpy as np
import pytest

from fairseq.binarizer import BinarizeSummary, FileBinarizer, VocabularyDatasetBinarizer
from fairseq.data import Dictionary, indexed_dataset


def make_corpus(path, n=200, seed=0):
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(30)]
    lines = [[rng.choice(words) for _ in range(rng.randint(0, 12))] for _ in range(n)]
    path.write_text("".join(" ".join(line) + ("\r\n" if i % 7 == 3 else "\n") for i, line in enumerate(lines)),
                    encoding="utf-8")
    return lines


def vocab_of(lines, drop=()):
    d = Dictionary()
    for line in lines:
        for w in line:
            if w not in drop:
                d.add_symbol(w)
    d.finalize()
    return d


def decoded(prefix, d):
    ds = indexed_dataset.make_dataset(str(prefix), "mmap")
    return [[d[i] for i in ds[k].tolist()] for k in range(len(ds))]


def test_binarize_line_counts():
    d = vocab_of([["a", "b"]])
    summary = BinarizeSummary()
    ids = VocabularyDatasetBinarizer(d).binarize_line("a  b zz\n", summary)
    assert ids.tolist() == [d.index("a"), d.index("b"), d.unk(), d.eos()]
    assert (summary.num_seq, summary.num_tok, summary.num_replaced) == (1, 4, 1)
    assert str(summary) == "1 sents, 4 tokens, 25.0% replaced"


def test_chunk_to_end_without_eos(tmp_path):
    lines = make_corpus(tmp_path / "raw")
    d = vocab_of(lines)
    summary = FileBinarizer._binarize_chunk_and_finalize(
        VocabularyDatasetBinarizer(d, append_eos=False), str(tmp_path / "raw"), offset_start=0, offset_end=-1,
        output_prefix=str(tmp_path / "out"), dataset_impl="mmap", vocab_size=len(d))
    assert decoded(tmp_path / "out", d) == lines
    assert (summary.num_seq, summary.num_tok) == (len(lines), sum(map(len, lines)))


@pytest.mark.parametrize("sizes_in_memory", [1 << 20, 7])
def test_any_worker_count_same_bytes(tmp_path, monkeypatch, sizes_in_memory):
    monkeypatch.setattr(indexed_dataset.MMapIndexedDatasetBuilder, "SIZES_IN_MEMORY", sizes_in_memory)
    lines = make_corpus(tmp_path / "raw")
    d = vocab_of(lines, drop={"w3"})
    outs = []
    for workers in (1, 2, 5):
        prefix = tmp_path / f"w{workers}"
        summary = FileBinarizer.multiprocess_dataset(str(tmp_path / "raw"), "mmap", VocabularyDatasetBinarizer(d),
                                                     str(prefix), vocab_size=len(d), num_workers=workers)
        assert decoded(prefix, d) == [[w if w != "w3" else "<unk>" for w in line] + ["</s>"] for line in lines]
        assert summary.num_replaced == sum(line.count("w3") for line in lines) > 0
        outs.append([(tmp_path / f"w{workers}.{ext}").read_bytes() for ext in ("bin", "idx")])
    assert outs[0] == outs[1] == outs[2]
    assert sorted(os.listdir(tmp_path)) == sorted(["raw"] + [f"w{w}.{e}" for w in (1, 2, 5) for e in ("bin", "idx")])


def test_reverse_numberized_and_custom_tokenizer(tmp_path):
    d = vocab_of([["a", "b", "c"]])
    s = BinarizeSummary()
    assert VocabularyDatasetBinarizer(d, reverse_order=True).binarize_line("a b", s).tolist() == [
        d.index("b"), d.index("a"), d.eos()]
    assert VocabularyDatasetBinarizer(d, already_numberized=True, append_eos=False).binarize_line(
        " 7 9 \n", s).tolist() == [7, 9]
    by_comma = VocabularyDatasetBinarizer(d, tokenize=lambda line: line.strip().split(","))
    assert by_comma.binarize_line("a,c", s).tolist() == [d.index("a"), d.index("c"), d.eos()]


def test_bad_utf8_in_a_worker_names_file_and_leaves_nothing(tmp_path):
    raw = tmp_path / "raw"
    raw.write_bytes(b"a b\n" * 50 + b"a \xff b\n" + b"b\n" * 50)
    d = vocab_of([["a", "b"]])
    with pytest.raises(ValueError, match=r"raw: not valid UTF-8 near byte 202"):
        FileBinarizer.multiprocess_dataset(str(raw), "mmap", VocabularyDatasetBinarizer(d), str(tmp_path / "o"),
                                           vocab_size=len(d), num_workers=2)
    assert os.listdir(tmp_path) == ["raw"]


def test_index_of_many_sentences_is_written_in_slices(tmp_path, monkeypatch):
    """200k sentences: sizes spill past SIZES_IN_MEMORY and pointers are written 64k at a time; the
    .idx still equals the one-shot layout (header, sizes, exclusive cumulative byte pointers)."""
    monkeypatch.setattr(indexed_dataset.MMapIndexedDatasetBuilder, "SIZES_IN_MEMORY", 50_000)
    rng = np.random.RandomState(0)
    sizes = rng.randint(0, 6, size=200_000).astype(np.int32)
    builder = indexed_dataset.MMapIndexedDatasetBuilder(str(tmp_path / "d.bin"), dtype=np.uint16)
    for i in range(0, len(sizes), 30_000):
        part = sizes[i:i + 30_000]
        builder.add_items(np.full(int(part.sum()), 7), part)
    builder.finalize(str(tmp_path / "d.idx"))
    pointers = np.concatenate([[0], np.cumsum(sizes.astype(np.int64) * 2)[:-1]])
    expected = (indexed_dataset.MAGIC + (1).to_bytes(8, "little") + bytes([8]) + len(sizes).to_bytes(8, "little")
                + sizes.tobytes() + pointers.tobytes())
    assert (tmp_path / "d.idx").read_bytes() == expected
    assert sorted(os.listdir(tmp_path)) == ["d.bin", "d.idx"]  # the spill file was unnamed
