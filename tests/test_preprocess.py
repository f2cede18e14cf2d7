"""fairseq-preprocess: identical bytes to real fairseq, any --workers, atomic on errors."""
import os

import pytest

from fairseq.data import Dictionary, MMapIndexedDataset
from fairseq.file_chunker_utils import find_offsets
from fairseq_cli.preprocess import get_parser, main

FILES = ["dict.txt", "train.bin", "train.idx", "valid.bin", "valid.idx"]


def run(argv):
    main(get_parser().parse_args(argv))


@pytest.fixture(scope="module")
def peer_bin(peer_dir):
    return peer_dir / "data-bin"


@pytest.mark.parametrize("workers", [1, 2])
def test_fixture_bytes_identical(peer_dir, peer_bin, tmp_path, workers):
    out = tmp_path / "bin"
    run(["--only-source", "--trainpref", str(peer_dir / "bpe/train.bpe"), "--validpref",
         str(peer_dir / "bpe/valid.bpe"), "--destdir", str(out), "--workers", str(workers)])
    for f in FILES:
        assert (out / f).read_bytes() == (peer_bin / f).read_bytes(), f
    log = (out / "preprocess.log").read_text()
    assert "27679 sents, 961168 tokens, 0.0% replaced" in log
    assert "1128 sents, 36089 tokens, 0.0222% replaced" in log
    assert sorted(os.listdir(out)) == sorted(FILES + ["preprocess.log"])  # no temporaries left


def test_srcdict_valid_only_and_multi_valid(peer_dir, peer_bin, tmp_path):
    out = tmp_path / "bin"
    valid = str(peer_dir / "bpe/valid.bpe")
    run(["--only-source", "--validpref", f"{valid},{valid}", "--srcdict", str(peer_bin / "dict.txt"),
         "--destdir", str(out), "--workers", "2"])
    assert (out / "dict.txt").read_bytes() == (peer_bin / "dict.txt").read_bytes()
    for name in ("valid", "valid1"):
        for ext in ("bin", "idx"):
            assert (out / f"{name}.{ext}").read_bytes() == (peer_bin / f"valid.{ext}").read_bytes()
    assert not (out / "train.bin").exists()


def test_small_corpus_threshold_nwords_and_reader(tmp_path):
    src = tmp_path / "train.txt"
    src.write_text("a b c\n\nb c c\r\nd   a\n", encoding="utf-8")
    out = tmp_path / "bin"
    run(["--only-source", "--trainpref", str(src), "--destdir", str(out), "--thresholdsrc", "2",
         "--padding-factor", "1"])
    d = Dictionary.load(str(out / "dict.txt"))
    assert d.symbols[4:] == ["c", "a", "b"]  # d (count 1) is below the threshold
    ds = MMapIndexedDataset(str(out / "train"))
    assert [ds[i].tolist() for i in range(len(ds))] == [[5, 6, 4, 2], [2], [6, 4, 4, 2], [3, 5, 2]]


def test_workers_split_many_ways(tmp_path):
    src = tmp_path / "t.txt"
    src.write_text("".join(f"{i % 7} {i % 3} x\n" if i % 5 else "\n" for i in range(101)), encoding="utf-8")
    outs = []
    for w in (1, 3, 7):
        out = tmp_path / f"w{w}"
        run(["--only-source", "--trainpref", str(src), "--destdir", str(out), "--workers", str(w)])
        outs.append([(out / f).read_bytes() for f in ("dict.txt", "train.bin", "train.idx")])
    assert outs[0] == outs[1] == outs[2]
    offs = find_offsets(str(src), 7)
    assert offs[0] == 0 and offs[-1] == src.stat().st_size and offs == sorted(offs)


def test_empty_input_names_file_and_leaves_nothing(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    out = tmp_path / "bin"
    with pytest.raises(ValueError, match=r"--trainpref: input file is empty: .*empty.txt"):
        run(["--only-source", "--trainpref", str(empty), "--destdir", str(out)])
    assert not out.exists()


def test_missing_input(tmp_path):
    out = tmp_path / "bin"
    out.mkdir()
    with pytest.raises(FileNotFoundError, match=r"--validpref: input file not found: .*nope.bpe"):
        run(["--only-source", "--trainpref", __file__, "--validpref", str(tmp_path / "nope.bpe"),
             "--destdir", str(out)])
    assert os.listdir(out) == []


def test_bad_srcdict_leaves_destdir_clean(tmp_path):
    bad = tmp_path / "dict.txt"
    bad.write_text("a 1\nb\n")
    src = tmp_path / "t.txt"
    src.write_text("a b\n")
    out = tmp_path / "bin"
    out.mkdir()
    (out / "keep.me").write_text("x")
    with pytest.raises(ValueError, match=r"dict.txt:2"):
        run(["--only-source", "--validpref", str(src), "--srcdict", str(bad), "--destdir", str(out)])
    assert os.listdir(out) == ["keep.me"]


def test_failure_midway_removes_temporaries(tmp_path, monkeypatch):
    src = tmp_path / "t.txt"
    src.write_text("a b\nc\n")
    out = tmp_path / "bin"
    from fairseq.data import indexed_dataset

    def boom(*a, **k):
        raise ValueError("disk full (simulated)")

    monkeypatch.setattr(indexed_dataset.MMapIndexedDatasetBuilder, "finalize", boom)
    with pytest.raises(ValueError, match="simulated"):
        run(["--only-source", "--trainpref", str(src), "--validpref", str(src), "--destdir", str(out)])
    assert not out.exists()
