"""benchmarks/bench_vs_fairseq.py: its smoke mode runs our fairseq-train end to end (the reference fairseq
lives in its own venv outside the repo, so only --dry-run can run here), and its roofline FLOP count is the
hand count of the C2 model."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import load_benchmark

REPO = Path(__file__).resolve().parents[1]
bench_vs_fairseq = load_benchmark("bench_vs_fairseq")


@pytest.mark.e2e_scripts
def test_dry_run_times_our_fairseq_train(peer_dir):
    p = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_vs_fairseq.py"), "--dry-run",
                        "--configs", "C1", "--data", str(peer_dir / "data-bin")],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert re.search(r"^ours: .* -> fairseq 0\.1\.0 .*/fairseq/__init__\.py", p.stdout, re.M), p.stdout
    # 2 updates minus 1: start-up jitter dominates, so the number may even be negative; only the line is checked
    assert re.search(r"^C1 ours -?[\d.]+ s/update \(CPU; wall -?[\d.]+\)$", p.stdout, re.M), p.stdout


def test_roofline_flops_are_the_hand_count(peer_dir):
    """C2 (4 x 512, break mode none): no padding, the encoder's hand count, and a head on a whole number of
    masked rows near 15%. C1 (complete blocks of varying length): batches are made from length-sorted
    indices, as fairseq's, so padding to the batch's longest row costs almost nothing (0.2% over the
    timed updates here; a break of that ordering would show up as ~20%)."""
    data = peer_dir / "data-bin"
    words = sum(1 for line in open(data / "dict.txt", encoding="utf-8") if line.strip())
    vocab = 4 + words + 1  # <s> <pad> </s> <unk>, dict.txt, <mask>
    L, T, d, f, B = 12, 512, 256, 1024, 4
    per_layer = T * (4 * d * d + 2 * d * f) + 2 * T * T * d   # q/k/v/out + FFN, scores + weighted sum
    padded, unpadded = bench_vs_fairseq.timed_update_flops(data, "C2", None, n_long=2, n_short=1)
    assert padded == unpadded
    head_rows = (padded - 6 * B * L * per_layer) / (6 * (d * d + d * vocab))  # masked rows per update
    assert abs(head_rows - round(head_rows)) < 1e-6 and 0.13 * B * T < head_rows < 0.17 * B * T, head_rows
    padded, unpadded = bench_vs_fairseq.timed_update_flops(data, "C1", None, n_long=40, n_short=5)
    assert 1.0 < padded / unpadded < 1.02, (padded, unpadded)
