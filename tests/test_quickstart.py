"""The quickstart: its embedded corpus builder, its flags, and a tiny end-to-end run."""
import json
import re
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
    qc.write_corpus(tmp_path / "b", root=root)
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


def test_bad_flags_give_one_line_errors(tmp_path, capsys):
    from fairseq_cli import quickstart as q

    for argv, needle in ((["--variants", "full,bogus"], "--variants"),
                         (["--budget-minutes", "0"], "--budget-minutes"),
                         (["--lr", "-1"], "--lr -1.0"), (["--encoder-layers", "0"], "--encoder-layers 0"),
                         (["--warmup-updates", "-2"], "--warmup-updates -2"),
                         (["--extra-train-args", "--max-update 5"], "--max-update is set by this tool"),
                         (["--corpus", str(tmp_path / "missing.txt")], "missing.txt")):
        with pytest.raises(SystemExit):
            q.cli_main(["--out", str(tmp_path / "o")] + argv)
        err = capsys.readouterr().err.strip()
        assert err.startswith("fairseq-sctd-quickstart: error:") and needle in err and "\n" not in err


@pytest.mark.slow
def test_tiny_quickstart_end_to_end_results_survive_a_failing_plot(tmp_path, capsys, monkeypatch):
    """Corpus -> BPE -> preprocess -> three interleaved trainings -> table; the plot fails: one line, exit 1,
    and the table and JSON are there. Then the plot from that JSON is a real PNG."""
    from fairseq_cli import quickstart as q

    def broken_plot(*a, **k):
        raise ModuleNotFoundError("No module named 'matplotlib'")

    monkeypatch.setattr(q, "plot_curves", broken_plot)
    out = tmp_path / "qs"
    qc.write_corpus(tmp_path / "text", root=qc.stdlib_root() / "email")  # a small slice keeps this fast
    with pytest.raises(SystemExit) as exit_info:
        q.cli_main([
            "--out", str(out), "--corpus", str(tmp_path / "text"), "--vocab-size", "600", "--budget-minutes", "0.03",
            "--encoder-layers", "4", "--encoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64",
            "--encoder-attention-heads", "2", "--tokens-per-sample", "64", "--batch-size", "8",
            "--validate-interval-updates", "10"])
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()[-1]
    assert err.startswith("fairseq-sctd-quickstart: error: the plot step failed (ModuleNotFoundError")
    assert str(out / "results.md") in err
    results = json.loads((out / "results.json").read_text())
    assert "interleaved" in results["measured"] and results["measured"] in (out / "results.md").read_text()
    summaries = [q.Summary(**v) for v in results["variants"]]
    assert [s.variant for s in summaries] == ["full", "token-drop", "sctd"]
    for s in summaries:
        # each variant trained until its own step time reached the budget (1.8 s), and not much longer
        assert s.updates > 0 and 1.8 <= s.train_seconds and s.curve_loss and 0 < s.final_valid_loss < 20
        assert s.curve_seconds[-1] == pytest.approx(s.train_seconds) and s.final_valid_loss == s.curve_loss[-1]
        assert s.curve_seconds[0] == 0 and s.curve_loss[0] == summaries[0].curve_loss[0]  # same initial weights
        assert (s.final_valid_loss_drop is None) == (s.variant == "full")
        assert (out / s.variant / "checkpoint_last.pt").is_file()
        row = re.search(rf"^{s.variant}\s+(\d+)\s", captured.out, re.M)
        assert row and int(row.group(1)) == s.updates
    assert (out / "data-bin" / "dict.txt").is_file() and not (out / "quickstart.png").exists()
    monkeypatch.undo()
    q.plot_curves(summaries, out / "quickstart.png", "title")
    png = (out / "quickstart.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
