"""benchmarks/bench_attention.py runs at a toy size and prints its three variants beside the matmul ideal."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.e2e_scripts
def test_bench_attention_smoke():
    p = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_attention.py"), "--batch", "2", "--seq", "16",
                        "--head-dim", "8", "--heads", "2", "--repeats", "1", "--warmup", "0"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert re.search(r"matmul FLOPs 0\.00 G, peak [\d.]+ GFLOP/s -> ideal", p.stdout), p.stdout
    for name in ("ours, attention dropout 0.1", "same maths, no dropout", "torch fused SDPA, no dropout"):
        assert re.search(rf"^  {re.escape(name)} +[\d.]+ ms +\d+% of the matmul peak$", p.stdout, re.M), p.stdout
