"""benchmarks/gpu_check.py on a machine without CUDA: one clear line and exit status 2, no traceback."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present: run the check itself instead")
def test_gpu_check_fails_clearly_without_cuda():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    p = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py")], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu_check: error: CUDA is not available"), p.stderr
    assert "this check needs one NVIDIA GPU" in lines[0]
