"""benchmarks/gpu_check.py: one clear line without CUDA, and every section's code run on the CPU (--dry-run),
so the script cannot die on its own bug the day a GPU is lent."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fairseq.optim.loss_scaler import DynamicLossScaler

from conftest import load_benchmark

REPO = Path(__file__).resolve().parents[1]
gpu_check = load_benchmark("gpu_check")


def _run(*flags):
    env = dict(os.environ, PYTHONPATH=str(REPO), CUDA_VISIBLE_DEVICES="")
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), *flags], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present: run the check itself instead")
def test_gpu_check_fails_clearly_without_cuda():
    p = _run()
    assert p.returncode == 2
    assert p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu_check: error: CUDA is not available"), p.stderr
    assert "this check needs one NVIDIA GPU" in lines[0]


@pytest.mark.e2e_scripts
def test_dry_run_runs_every_section():
    p = _run("--dry-run")
    out = p.stdout
    assert p.returncode == 0, out + p.stderr
    assert "FAIL" not in out and out.rstrip().splitlines()[-1].startswith("gpu_check: done in")
    trains = re.findall(r"^train  (--\S+(?: --compile)?)\s+ok: .* ([\d.]+) updates/s, loss ([\d.]+), overflows 0",
                        out, re.M)
    assert [t[0] for t in trains] == ["--memory-efficient-fp16", "--fp16", "--bf16"], out  # numbers were parsed
    assert "ddp worker ok: backend gloo, world 1, all_reduce 1, 3 DDP steps" in out
    assert re.search(r"^mfu    roberta_base T=64 bf16 eager .* MFU [\d.]+%", out, re.M), out
    drop = re.search(r"^drop .* token drop ([\d.]+) of full \(ideal ([\d.]+)\), ScTD two-pass update ([\d.]+)", out,
                     re.M)
    assert drop and 0 < float(drop.group(1)) and float(drop.group(2)) < 1, out
    assert len(re.findall(r"^memory roberta_large T=64 batch 2 fp16 .* ran", out, re.M)) == 2, out


def test_overflow_pattern_matches_the_trainers_message():
    """The train section counts skipped fp16 updates by the line the trainer logs for them."""
    scaler = DynamicLossScaler(init_scale=8.0)
    with pytest.raises(OverflowError) as e:
        scaler.check_overflow(float("inf"))
    assert gpu_check.OVERFLOW.search(f"update 3: {e.value}")
