"""benchmarks/glue_runs.py: glue.sh per (checkpoint, task, seed), medians table, finished runs skipped."""
import json
from pathlib import Path

import pytest
from conftest import load_benchmark

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: tiny models, busy cores

REPO = Path(__file__).resolve().parents[1]


def _module():
    return load_benchmark("glue_runs")


def test_best_line_parsing_and_median_table():
    g = _module()
    line = "MRPC best dev: loss=0.931, f1=81.2 (majority class 81.22), accuracy=68.4 (majority class 68.4)"
    assert g.parse_best(f"x\n{line}\n", "MRPC") == {"loss": 0.931, "f1": 81.2, "accuracy": 68.4}
    with pytest.raises(RuntimeError, match="no 'best dev' line"):
        g.parse_best("nothing here", "MRPC")
    md = g.table({"a": {"MRPC": [{"accuracy": 60.0, "f1": 1.0}, {"accuracy": 70.0, "f1": 3.0},
                                 {"accuracy": 90.0, "f1": 2.0}]}}, {"MRPC": ("1", {"f1": 81.22, "accuracy": 68.38})})
    assert "| a | 70.0 (3) | 2.0 (3) |" in md and "MRPC accuracy | MRPC f1" in md
    assert "| majority class | 68.4 | 81.2 |" in md


@pytest.mark.slow
@pytest.mark.e2e_scripts
def test_tiny_mrpc_run_then_skipped_on_rerun(peer_dir, shared_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # glue.sh's fairseq-train: a tiny model, one thread
    g = _module()
    argv = ["--checkpoint", f"peer={peer_dir / 'checkpoint_last.no-optimizer-state.pt'}",
            "--dict", str(peer_dir / "data-bin" / "dict.txt"), "--tokenizer-json", str(peer_dir / "tokenizer.json"),
            "--glue-dir", str(shared_dir / "data" / "glue"), "--tasks", "MRPC", "--seeds", "2",
            "--max-epoch", "1", "--max-update", "1", "--lr", "3e-4", "--work-dir", str(tmp_path / "w"),
            "--results", str(tmp_path / "glue")]
    results = g.main(argv)
    log = (tmp_path / "w" / "peer" / "MRPC" / "seed2" / "MRPC.train.log").read_text()
    assert "lr=[0.0003]" in log and "lr=[1e-05]" not in log  # --lr replaced the recipe's MRPC lr
    runs = results["peer"]["MRPC"]
    assert len(runs) == 1 and all(0 <= r["accuracy"] <= 100 and "f1" in r for r in runs)
    assert json.loads((tmp_path / "glue.json").read_text()) == results
    assert "| peer |" in (tmp_path / "glue.md").read_text()
    assert "| majority class | 68.4 | 81.2 |" in (tmp_path / "glue.md").read_text()  # MRPC dev: 279 of 408 are "1"
    capsys.readouterr()
    assert g.main(argv) == results
    assert capsys.readouterr().out.count("done earlier, skipped") == 1
