"""The quickstart: its embedded corpus builder, its flags, and a tiny end-to-end run."""
import json
import re
from pathlib import Path

import pytest

from fairseq_cli.quickstart import corpus as qc

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: tiny models, busy cores

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
    from fairseq_cli.quickstart import cli as q

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


@pytest.mark.e2e_scripts
@pytest.mark.slow
def test_tiny_quickstart_end_to_end_results_survive_a_failing_plot(tmp_path, capsys, monkeypatch, shared_dir):
    """Corpus -> BPE -> preprocess -> three interleaved trainings -> table; the plot fails: one line, exit 1,
    and the table and JSON are there. Then the plot from that JSON is a real PNG."""
    from fairseq_cli.quickstart import cli as q

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
            "--validation-points", "4", "--warmup-updates", "1000"])
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()[-1]
    assert err.startswith("fairseq-sctd-quickstart: error: the plot step failed (ModuleNotFoundError")
    assert str(out / "results.md") in err
    results = json.loads((out / "results.json").read_text())
    assert "interleaved" in results["measured"] and results["measured"] in (out / "results.md").read_text()
    assert results["title"].startswith("4 layers x 32 wide RoBERTa (FFN 64, 2 heads; roberta_base's layout, scaled")
    # fewer updates than the lr warm-up (1000): results.md and the printed table say so in words
    assert any(c.startswith("too few updates to compare") for c in results["caveats"])
    for note in results["caveats"]:
        assert f"CAVEAT: {note}" in (out / "results.md").read_text() and f"CAVEAT: {note}" in captured.out
    summaries = [q.Summary(**v) for v in results["variants"]]
    assert [s.variant for s in summaries] == ["full", "token-drop", "sctd"]
    for s in summaries:
        # each variant trained until its own step time reached the budget (1.8 s), and not much longer
        assert s.updates > 0 and 1.8 <= s.train_seconds and s.curve_loss and 0 < s.final_valid_loss < 20
        assert s.curve_seconds[-1] == pytest.approx(s.train_seconds) and s.final_valid_loss == s.curve_loss[-1]
        assert s.curve_seconds[0] == 0 and s.curve_loss[0] == summaries[0].curve_loss[0]  # same initial weights
        assert (s.final_valid_loss_drop is None) == (s.variant == "full") == (s.curve_loss_drop is None)
        assert s.curve_loss_drop is None or len(s.curve_loss_drop) == len(s.curve_loss)
        # validation at 0, whenever the clock enters a new quarter of the budget (1.8 s) and at the end
        quarters = [int(t // 0.45) for t in s.curve_seconds[1:]]
        assert len(quarters) >= 2 and all(a < b for a, b in zip(quarters[:-2], quarters[1:-1]))
        assert (out / s.variant / "checkpoint_last.pt").is_file()
        for name in ("dict.txt", "tokenizer.json", "encoder.json", "vocab.bpe"):  # a hub-ready folder
            assert (out / s.variant / name).read_bytes() == (out / "data-bin" / name).read_bytes()
        row = re.search(rf"^{s.variant}\s+(\d+)\s", captured.out, re.M)
        assert row and int(row.group(1)) == s.updates
    assert (out / "data-bin" / "dict.txt").is_file() and not (out / "quickstart.png").exists()
    monkeypatch.undo()
    q.plot_curves(summaries, out / "quickstart.png", "title", results["caveats"])
    png = (out / "quickstart.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000

    # the model folder as it is: the hub (README's Python block) and fairseq-export-hf take it
    from fairseq.models.roberta import RobertaModel
    from fairseq_cli import export_hf

    roberta = RobertaModel.from_pretrained(str(out / "sctd"), checkpoint_file="checkpoint_last.pt")
    line = (tmp_path / "text" / "train.txt").read_text().splitlines()[0]  # every token is in the dictionary
    assert roberta.decode(roberta.encode(line)) == line
    export_hf.cli_main([str(out / "sctd" / "checkpoint_last.pt"), str(tmp_path / "hf"), "--dict",
                        str(out / "sctd" / "dict.txt"), "--bpe-dir", str(out / "sctd")])
    assert (tmp_path / "hf" / "model.safetensors").is_file() and (tmp_path / "hf" / "tokenizer.json").is_file()
    # ... and examples/sctd/glue.sh (CHECKPOINT, DATA_DICT_DIR = the folder), on WNLI for 2 updates
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(repo), PYTHON=sys.executable, OMP_NUM_THREADS="1", MAX_EPOCH="1",
               OUT_DIR=str(tmp_path / "glue"))
    proc = subprocess.run(["bash", str(repo / "examples" / "sctd" / "glue.sh"), "WNLI", str(shared_dir / "data" / "glue"),
                           str(out / "sctd" / "checkpoint_last.pt"), str(out / "sctd"), "--max-update", "2"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (tmp_path / "glue" / "WNLI-ckpt" / "checkpoint_best.pt").is_file()


def _summary(variant, updates, seconds, ideal_ratio):
    from fairseq_cli.quickstart import cli as q

    return q.Summary(variant=variant, updates=updates, train_seconds=seconds, tokens_per_s=1.0,
                     steps_per_s=updates / seconds, median_step_s=seconds / updates, final_valid_loss=10.0,
                     final_valid_loss_drop=None, curve_seconds=[0.0, seconds], curve_loss=[12.9, 10.0],
                     curve_loss_drop=None, ideal_step_ratio=ideal_ratio, train_argv=[])


def test_caveats_say_in_words_when_the_comparison_misleads():
    """The issue's run: 'sctd 6.13x, ideal 1.20x' from a handful of updates on a busy machine must come with words."""
    from fairseq_cli.quickstart import cli as q

    quiet = q.CpuShare(cpu_seconds=190.0, wall_seconds=100.0, threads=2)
    short = [_summary("full", 3, 6.0, 1.0), _summary("token-drop", 5, 6.0, 0.74), _summary("sctd", 18, 6.0, 1 / 1.2)]
    notes = q.caveats(short, quiet, min_updates=50)
    assert notes[0] == ("too few updates to compare: full 3, token-drop 5, sctd 18 (under 50); speedups and losses "
                        "this early are mostly noise and learning-rate warm-up: run a longer --budget-minutes")
    assert notes[1] == ("sctd's speedup 6.00x is beyond 1.5x its ideal 1.20x: not a real speedup (noise or load), "
                        "do not quote it")
    assert len(notes) == 2  # token-drop's 1.67x is within 1.5x of its 1.35x ideal; the CPU was not busy
    table = q.format_table(short, notes)
    assert table.splitlines()[-2:] == [f"CAVEAT: {n}" for n in notes]
    honest = [_summary("full", 300, 120.0, 1.0), _summary("sctd", 340, 120.0, 1 / 1.2)]
    assert q.caveats(honest, quiet, min_updates=50) == []
    # the run under load: ScTD at 0.67x the full model's steps/s, slower than the model it thins out
    slower = q.caveats([_summary("full", 300, 120.0, 1.0), _summary("sctd", 200, 120.0, 1 / 1.2)], quiet, 50)
    assert slower == ["sctd ran at 0.67x the full model's steps/s: slower, where its ideal is 1.20x faster. Its steps "
                      "do less work, so the time went elsewhere (load that hit its steps harder, one-off costs in too "
                      "few updates): not a measurement of token dropping, and its losses at equal time compare it "
                      "with fewer updates than it would get; do not quote it, rerun on a quiet machine with a longer "
                      "--budget-minutes"]
    busy = q.caveats(honest, q.CpuShare(cpu_seconds=50.0, wall_seconds=100.0, threads=2), min_updates=50)
    assert busy == ["the machine was busy: this process got 25% of the CPU its 2 thread(s) could use (50 s CPU in "
                    "100 s wall), so step times are noisy; rerun on a quieter machine"]


def test_model_description_names_the_model():
    import argparse

    from fairseq_cli.quickstart import cli as q

    args = q.build_parser().parse_args([])
    assert q.model_description(args) == ("12 layers x 128 wide RoBERTa (FFN 512, 4 heads; roberta_base's layout, "
                                         "scaled down)")
    full = argparse.Namespace(arch="roberta_base", encoder_layers=12, encoder_embed_dim=768,
                              encoder_ffn_embed_dim=3072, encoder_attention_heads=12)
    assert q.model_description(full) == "12 layers x 768 wide RoBERTa (FFN 3072, 12 heads: roberta_base)"


def test_plot_zooms_where_the_variants_differ(tmp_path):
    """The zoom panel's y-range fits the curves after the first third (not the ~13-bit start); dashed lines
    for the dropping forward; caveats printed on the figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fairseq_cli.quickstart import results as quickstart_results
    from fairseq_cli.quickstart import cli as q

    t = [0.0, 20.0, 40.0, 60.0, 80.0, 100.0, 120.0]
    full = _summary("full", 300, 120.0, 1.0)
    full.curve_seconds, full.curve_loss = t, [12.9, 11.0, 10.4, 10.1, 9.9, 9.8, 9.7]
    sctd = _summary("sctd", 340, 120.0, 1 / 1.2)
    sctd.curve_seconds, sctd.curve_loss = t, [12.9, 10.9, 10.3, 10.0, 9.8, 9.6, 9.5]
    sctd.curve_loss_drop = [12.9, 11.2, 10.6, 10.3, 10.1, 9.9, 9.8]
    assert quickstart_results._zoom_range([full, sctd], 40.0) == pytest.approx((9.5 - 0.088, 10.6 + 0.088))
    figures = []
    monkey_close = plt.close
    try:
        plt.close = lambda fig=None: figures.append(fig)
        q.plot_curves([full, sctd], tmp_path / "p.png", "title", ["too few updates"])
    finally:
        plt.close = monkey_close
    (fig,) = figures
    whole, zoom = fig.axes
    assert zoom.get_ylim() == pytest.approx((9.5 - 0.088, 10.6 + 0.088)) and whole.get_ylim()[1] > 12.9
    assert [line.get_linestyle() for line in zoom.get_lines()] == ["-", "-", "--"]
    assert any("CAVEAT: too few updates" in text.get_text() for text in fig.texts)
    plt.close(fig)
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_of_a_short_run_zooms_and_shows_the_dashed_lines(tmp_path):
    """A short run (the issue's: a few updates, curves still falling steeply, the dropping forward lying on its
    variant's solid line): the zoom spans a small part of the whole range, and every dashed line is drawn
    thicker than, and above, the solid line it lies on, with its own marks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fairseq_cli.quickstart import results as quickstart_results
    from fairseq_cli.quickstart import cli as q

    t = [0.0, 3.1, 6.0, 9.2]
    full = _summary("full", 4, 9.2, 1.0)
    full.curve_seconds, full.curve_loss = t, [12.87, 12.62, 12.42, 12.23]
    drop = _summary("token-drop", 4, 9.2, 0.74)
    drop.curve_seconds, drop.curve_loss = t, [12.87, 12.57, 12.34, 12.14]
    drop.curve_loss_drop = [v - 0.002 for v in drop.curve_loss]  # on top of the solid line
    assert quickstart_results._zoom_start([full, drop]) == pytest.approx(9.2 * 2 / 3)  # only the ends differ
    figures = []
    monkey_close = plt.close
    try:
        plt.close = lambda fig=None: figures.append(fig)
        q.plot_curves([full, drop], tmp_path / "p.png", "title")
    finally:
        plt.close = monkey_close
    (fig,) = figures
    whole, zoom = fig.axes
    low, high = zoom.get_ylim()
    assert high - low <= 0.3 * (whole.get_ylim()[1] - whole.get_ylim()[0])
    assert low < 12.14 and 12.23 < high and zoom.get_xlim()[0] > 5.0
    # a run of 1-2 updates under load: the curves move by thousandths of a bit, and each variant's one update
    # ends at its own time. Neither panel magnifies that noise, and the zoom holds every variant's end.
    for x, ends in ((full, [0.0, 9.5, 23.6]), (drop, [0.0, 14.2, 47.6])):
        x.curve_seconds, x.curve_loss = ends, [12.8720, 12.8720, 12.8677]
    drop.curve_loss_drop = [12.8721, 12.8721, 12.8678]
    start = quickstart_results._zoom_start([full, drop])
    low, high = quickstart_results._zoom_range([full, drop], start)
    whole_low, whole_high = quickstart_results._whole_range([full, drop])
    assert start <= 23.6 and high - low == pytest.approx(whole_high - whole_low) == pytest.approx(0.2)
    for ax in (whole, zoom):
        solid, dashed = [line for line in ax.get_lines() if line.get_color() == "C1"]
        assert solid.get_linestyle() == "-" and dashed.get_linestyle() != "-" and dashed.get_marker() == "x"
        assert dashed.get_zorder() > solid.get_zorder() and dashed.get_linewidth() >= 2 * solid.get_linewidth()
    plt.close(fig)
