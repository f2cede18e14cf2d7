"""benchmarks/bench_preprocess.py runs end to end at tiny sizes (the real numbers are in docs/faults.md)."""
import os

import pytest

from conftest import load_benchmark

bench_preprocess = load_benchmark("bench_preprocess")


@pytest.mark.e2e_scripts
def test_smoke_tiny_sizes(tmp_path, capsys):
    results = bench_preprocess.main(["--sizes-mb", "0.3", "0.6", "--workers", "1", "2", "--tmpdir", str(tmp_path)])
    assert sorted(results) == sorted(("ours", s, w) for s in (0.3, 0.6) for w in (1, 2))
    for r in results.values():
        assert r["mb_s"] > 0 and r["cpu"] > 0 and r["max_rss"] > 10 and r["tree_rss"] >= r["max_rss"] * 0.5
    out = capsys.readouterr().out
    assert "ours     workers 1: memory 0.6 MB / 0.3 MB: max_rss" in out
    assert os.listdir(tmp_path) == []  # corpora and outputs removed


def test_corpus_size(tmp_path):
    n = bench_preprocess.build_corpus(str(tmp_path / "c.txt"), 0.05)
    assert n == os.path.getsize(tmp_path / "c.txt") and 50_000 <= n < 50_000 + 2_000
