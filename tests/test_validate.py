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


def test_token_drop_checkpoint_validates_the_full_model_and_says_so(peer_dir, tmp_path, caplog):
    """A checkpoint trained with --token-drop/ScTD: fairseq-validate logs no dropping schedule as if it used one,
    says that validation runs the full model, and gets fairseq-train's own valid loss of that checkpoint."""
    import json
    import shlex

    from fairseq import options
    from fairseq_cli import train

    caplog.set_level("INFO")
    data = peer_dir / "data-bin"
    tiny = ("--encoder-layers 4 --encoder-embed-dim 16 --encoder-ffn-embed-dim 32 --encoder-attention-heads 2 "
            "--tokens-per-sample 64 --max-positions 64 --sample-break-mode complete --batch-size 4 "
            "--skip-invalid-size-inputs-valid-test")
    train.main(options.parse_args_and_arch(options.get_training_parser(), shlex.split(
        f"{data} -a roberta_base {tiny} --optimizer adam --lr 1e-3 --max-update 2 --max-valid-steps 3 --log-format json "
        f"--save-dir {tmp_path} --criterion masked_lm --token-drop 0.5 --sctd-interval 2 --no-epoch-checkpoints")))
    trained = [json.loads(r.getMessage()) for r in caplog.records if r.name == "valid"][-1]["valid_loss"]
    caplog.clear()
    args = validate.parse_args([str(data), "--path", str(tmp_path / "checkpoint_last.pt"), "--max-valid-steps", "3",
                                "--skip-invalid-size-inputs-valid-test", "--log-format", "simple"])
    (res,) = validate.main(args)
    messages = [r.getMessage() for r in caplog.records]
    assert not any("token dropping" in m for m in messages)
    assert ("validation runs the full model (the checkpoint was trained with --token-drop 0.5 with ScTD every 2 "
            "updates: a training-time setting)") in messages
    assert res["loss"] == float(trained)
