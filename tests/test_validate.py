"""fairseq-validate on fairseq's own checkpoint reproduces fairseq's valid loss (train.log: 10.306)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fairseq_cli import validate


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def test_validate_fixture_checkpoint(peer_dir, caplog):
    caplog.set_level("INFO")
    args = validate.parse_args([str(peer_dir / "data-bin"), "--path",
                                str(peer_dir / "checkpoint_last.no-optimizer-state.pt"), "--task", "masked_lm",
                                "--batch-size", "32", "--log-format", "simple"])
    assert args.criterion == "masked_lm" and args.tokens_per_sample == 128  # from fairseq's cfg
    (res,) = validate.main(args)
    assert res["loss"] == 10.306 and res["ppl"] == 1265.66 and res["subset"] == "valid"
    line = [r.getMessage() for r in caplog.records if r.name == "valid"][-1]
    assert line.startswith("valid on 'valid' subset | loss 10.306 | ppl 1265.66 | wps ")


def test_validate_errors(peer_dir, tmp_path, capsys):
    with pytest.raises(SystemExit):
        validate.cli_main([str(peer_dir / "data-bin"), "--path", str(tmp_path / "missing.pt")])
    err = capsys.readouterr().err
    assert "checkpoint not found" in err and "missing.pt" in err


def test_spawned_validate_logs_like_one_process(peer_dir, tmp_path):
    """--distributed-world-size 2 spawns fresh workers: rank 0 must print the valid line and fill --log-file."""
    repo = Path(__file__).resolve().parents[1]
    log_file = tmp_path / "validate.log"
    out = subprocess.run(
        [sys.executable, "-m", "fairseq_cli.validate", str(peer_dir / "data-bin"), "--path",
         str(peer_dir / "checkpoint_last.no-optimizer-state.pt"), "--task", "masked_lm", "--batch-size", "32",
         "--log-format", "simple", "--cpu", "--distributed-world-size", "2", "--log-file", str(log_file)],
        capture_output=True, text=True, timeout=180, env=dict(os.environ, PYTHONPATH=str(repo)))
    assert out.returncode == 0, out.stderr
    lines = [ln for ln in out.stdout.splitlines() if "valid on 'valid' subset | loss 10.306" in ln]
    assert len(lines) == 1, out.stdout  # rank 0 only, the same loss as one process
    assert "valid on 'valid' subset | loss 10.306" in log_file.read_text()
