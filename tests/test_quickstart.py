"""The quickstart: its embedded corpus builder, its log parsing, and a tiny end-to-end run."""
import json
import re
import textwrap
from pathlib import Path

import pytest

from fairseq import quickstart_corpus as qc

MODULE_A = '''
"""Module alpha holds several paragraphs of prose about gardens and rivers.

It also has a second paragraph that is written across
two source lines and is long enough to keep.

>>> print("doctest lines are not prose at all")

- a bullet item with enough words to pass the length test
"""


class Boat:
    """A boat floats on the river and carries people from one bank to the other.

    ====== =========
    table  rule rows
    ====== =========
    """

    def row(self):
        """Row the boat gently down the stream until the evening comes.

        Short one.
        """


def duplicate():
    """A boat floats on the river and carries people from one bank to the other."""
'''

MODULE_B = '''
"""Module beta explains how bridges are built over wide and deep valleys.

Engineers measure the span first and then decide which kind of bridge fits best.
"""
'''

MODULE_C = '''
"""Only one paragraph of prose lives in this module, so it is not a document."""
'''


def _fake_stdlib(root: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "test").mkdir()
    (root / "a.py").write_text(MODULE_A)
    (root / "pkg" / "b.py").write_text(MODULE_B)
    (root / "c.py").write_text(MODULE_C)
    (root / "test" / "t.py").write_text(MODULE_B.replace("beta", "gamma"))  # excluded directory
    (root / "broken.py").write_text("def (:\n")  # does not parse: skipped
    return root


def test_paragraph_rules():
    assert qc.split_paragraphs("one\n  two\n\n\nthree\n") == ["one two", "three"]
    assert qc.is_prose("Row the boat gently down the stream until the evening comes.")
    assert not qc.is_prose("Short one.")
    assert not qc.is_prose(">>> print('doctest lines are not prose at all, no matter how long')")
    assert not qc.is_prose("- a bullet item with enough words to pass the length test")
    assert not qc.is_prose("1. a numbered item with enough words to pass the length test")
    assert not qc.is_prose("====== ========= table rule rows that are long enough to count")
    assert not qc.is_prose("x = f(a[0], b[1]) + g(c[2], d[3]) * h(e[4], f[5]) / 2.0 ** 3")


def test_document_structure_on_a_small_tree(tmp_path):
    root = _fake_stdlib(tmp_path / "lib")
    docs = qc.build_documents(root)
    assert docs == [
        ["Module alpha holds several paragraphs of prose about gardens and rivers.",
         "It also has a second paragraph that is written across two source lines and is long enough to keep.",
         "A boat floats on the river and carries people from one bank to the other.",
         "Row the boat gently down the stream until the evening comes."],
        ["Module beta explains how bridges are built over wide and deep valleys.",
         "Engineers measure the span first and then decide which kind of bridge fits best."],
    ]
    stats = qc.write_corpus(tmp_path / "out", seed=1234, valid_fraction=0.05, root=root)
    assert (stats.train_docs, stats.valid_docs) == (1, 1)
    written = {stats.train_path.read_text(), stats.valid_path.read_text()}
    assert written == {"\n".join(d) + "\n" for d in docs}


def test_real_stdlib_corpus_is_deterministic_and_well_formed(tmp_path):
    root = qc.stdlib_root() / "email"  # a slice of the real standard library keeps this fast
    a = qc.write_corpus(tmp_path / "a", root=root)
    b = qc.write_corpus(tmp_path / "b", root=root)
    for name in ("train.txt", "valid.txt"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    c = qc.write_corpus(tmp_path / "c", root=root, seed=7)
    assert (tmp_path / "c" / "train.txt").read_bytes() != (tmp_path / "a" / "train.txt").read_bytes()
    assert a.train_docs + a.valid_docs == c.train_docs + c.valid_docs >= 10
    assert a.valid_docs == max(1, round(0.05 * (a.train_docs + a.valid_docs)))
    for path, ndocs, nlines in ((a.train_path, a.train_docs, a.train_lines),
                                (a.valid_path, a.valid_docs, a.valid_lines)):
        raw = path.read_text(encoding="utf-8")
        assert raw.endswith("\n") and not raw.endswith("\n\n") and "\n\n\n" not in raw
        documents = raw[:-1].split("\n\n")
        assert len(documents) == ndocs and raw.count("\n") == nlines
        for doc in documents:
            paragraphs = doc.split("\n")
            assert len(paragraphs) >= 2 and len(set(paragraphs)) == len(paragraphs)
            assert all(qc.is_prose(p) for p in paragraphs)


def test_split_text_file_and_errors(tmp_path):
    src = tmp_path / "my.txt"
    src.write_text("".join(f"doc {i} para one\ndoc {i} para two\n\n" for i in range(40)))
    stats = qc.split_text_file(src, tmp_path / "out", valid_fraction=0.05)
    assert (stats.train_docs, stats.valid_docs) == (38, 2)
    assert stats.train_lines == 38 * 3 - 1 and stats.valid_lines == 2 * 3 - 1
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        qc.split_text_file(tmp_path / "nope.txt", tmp_path / "o2")
    with pytest.raises(ValueError, match="valid_fraction"):
        qc.split_text_file(src, tmp_path / "o3", valid_fraction=1.5)


def test_json_log_parsing_and_summary():
    from fairseq_cli import quickstart as q

    lines = [
        '2026-01-01 00:00:00 | INFO | fairseq_cli.train | not json',
        '2026-01-01 00:00:01 | INFO | train_inner | {"epoch": 1, "update": 0.5, "loss": "12", "wpb": "100", '
        '"num_updates": "10", "train_wall": "2", "wall": "3"}',
        '2026-01-01 00:00:02 | INFO | train_inner | {"epoch": 1, "update": 1.0, "loss": "11", "wpb": "300", '
        '"num_updates": "20", "train_wall": "4", "wall": "8"}',
        '2026-01-01 00:00:03 | INFO | valid | {"epoch": 1, "valid_loss": "10.5", "valid_num_updates": "15"}',
        '2026-01-01 00:00:04 | INFO | valid | {"epoch": 1, "valid_loss": "10", "valid_num_updates": "20"}',
        '2026-01-01 00:00:05 | INFO | valid | {"epoch": 1, "valid_loss": "9.5", "valid_num_updates": "24"}',
        '2026-01-01 00:00:06 | INFO | train | {"epoch": 1, "train_loss": "11", "train_wpb": "200", '
        '"train_num_updates": "24", "train_train_wall": "8", "train_wall": "9"}',
    ]
    log = q.RunLog([p for p in map(q.parse_json_log_line, lines) if p])
    assert [t for t, _ in log.records] == ["train_inner", "train_inner", "valid", "valid", "valid", "train"]
    s = q.summarize("full", log, 1.0)
    assert s.updates == 24 and s.train_seconds == 8.0
    assert s.tokens_per_s == pytest.approx(200 * 24 / 8.0)
    assert s.steps_per_s == pytest.approx(24 / 8.0)
    # update 15 is half way through the second interval: 2 + 4/2; update 24 ends at the epoch total
    assert s.curve_seconds == [pytest.approx(4.0), pytest.approx(6.0), pytest.approx(8.0)]
    assert s.curve_loss == [10.5, 10.0, 9.5] and s.final_valid_loss == 9.5
    no_epoch_line = q.summarize("full", q.RunLog(log.records[:-1]), 1.0)  # falls back to train_inner
    assert no_epoch_line.updates == 20 and no_epoch_line.train_seconds == 6.0
    assert no_epoch_line.tokens_per_s == pytest.approx((100 * 10 + 300 * 10) / 6.0)


def test_bad_flags_give_one_line_errors(tmp_path, capsys):
    from fairseq_cli import quickstart as q

    for argv, needle in ((["--variants", "full,bogus"], "--variants"),
                         (["--budget-minutes", "0"], "--budget-minutes"),
                         (["--corpus", str(tmp_path / "missing.txt")], "missing.txt")):
        with pytest.raises(SystemExit):
            q.cli_main(["--out", str(tmp_path / "o")] + argv)
        err = capsys.readouterr().err.strip()
        assert err.startswith("fairseq-sctd-quickstart: error:") and needle in err and "\n" not in err


@pytest.mark.slow
def test_tiny_quickstart_end_to_end(tmp_path, capsys):
    """Corpus -> BPE -> preprocess -> three short trainings -> table + PNG, with a tiny model."""
    pytest.importorskip("matplotlib")
    from fairseq_cli import quickstart as q

    out = tmp_path / "qs"
    qc.write_corpus(tmp_path / "text", root=qc.stdlib_root() / "email")  # a small slice keeps this fast
    summaries = q.run(q.build_parser().parse_args([
        "--out", str(out), "--corpus", str(tmp_path / "text"), "--vocab-size", "600", "--budget-minutes", "0.05",
        "--encoder-layers", "4", "--encoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64",
        "--encoder-attention-heads", "2", "--tokens-per-sample", "64", "--batch-size", "8",
        "--validate-interval-updates", "10", "--log-interval", "5"]))
    printed = capsys.readouterr().out
    assert [s.variant for s in summaries] == ["full", "token-drop", "sctd"]
    assert '"valid_loss"' not in printed  # fairseq-train's log goes to OUT/<variant>/train.log only
    for s in summaries:
        assert s.updates > 0 and s.curve_loss and 0 < s.final_valid_loss < 20
        assert (out / s.variant / "train.log").is_file()
        row = re.search(rf"^{s.variant}\s+(\d+)\s", printed, re.M)
        assert row and int(row.group(1)) == s.updates
    png = (out / "quickstart.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert json.loads((out / "results.json").read_text())[0]["variant"] == "full"
    assert (out / "data-bin" / "dict.txt").is_file()
