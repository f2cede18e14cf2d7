"""Side by side with the real fairseq 0.12.2: tests/make_optim_reference.py, run now with fairseq's python,
gives the numbers committed in tests/data/fairseq_optim_reference.json (which tests/test_lr_schedulers.py
and tests/test_optimizers.py hold ours to, so ours equal fairseq's as installed, not only as recorded).
Skips without that install: build it with ../shared/tools/fairseq-0.12.2/build.sh, or point
FAIRSEQ_PEER_PYTHON at its python. The multi-epoch fairseq-train runs (3 minutes) are left to the script."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
PYTHON = Path(os.environ.get("FAIRSEQ_PEER_PYTHON", "/tmp/fairseq-peer-venv/bin/python"))


@pytest.mark.e2e_scripts
def test_reference_is_what_fairseq_computes_now(tmp_path):
    if not PYTHON.is_file():
        pytest.skip(f"no fairseq 0.12.2 python at {PYTHON} (build it with ../shared/tools/fairseq-0.12.2/build.sh "
                    "or set FAIRSEQ_PEER_PYTHON)")
    out = tmp_path / "ref.json"
    run = subprocess.run([str(PYTHON), str(TESTS / "make_optim_reference.py"), "--out", str(out),
                          "--parts", "schedules,optimizers"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    fresh = json.loads(out.read_text())
    committed = json.loads((TESTS / "data" / "fairseq_optim_reference.json").read_text())
    assert fresh["fairseq"] == committed["fairseq"] == "0.12.2"
    for part in ("schedules", "optimizers"):
        assert fresh[part] == committed[part], part
