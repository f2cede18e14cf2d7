"""Bad input that used to train silently or end in a traceback: one line naming the flag/file, exit != 0.

(Every numeric flag's domain is covered table-driven in tests/test_flags_audit.py.)"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fairseq_cli import train, validate

REPO = Path(__file__).resolve().parents[1]


def _cli(module, *argv):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", module, *map(str, argv)], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=120)


def _one_line(err: str, *needles):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def test_tokens_per_sample_beyond_positions_stops_before_building(peer_dir):
    """The fixture's command with --tokens-per-sample 100000 asked for a 160 GB attention matrix."""
    r = _cli("fairseq_cli.train", peer_dir / "data-bin", "--task", "masked_lm", "--arch", "roberta_base",
             "--encoder-layers", "4", "--encoder-embed-dim", "128", "--encoder-ffn-embed-dim", "512",
             "--encoder-attention-heads", "4", "--tokens-per-sample", "100000", "--batch-size", "8", "--cpu",
             "--no-save", "--optimizer", "adam")
    assert r.returncode == 2
    _one_line(r.stderr, "fairseq-train: error: --tokens-per-sample 100000", "--max-positions")
    assert "loaded" not in r.stdout  # nothing was read


def test_tokens_per_sample_beyond_explicit_max_positions(capsys):
    with pytest.raises(SystemExit) as e:
        train.cli_main(["D", "-a", "roberta_tiny", "--batch-size", "8", "--tokens-per-sample", "1024",
                        "--max-positions", "512", "--optimizer", "adam"])
    assert e.value.code == 2
    _one_line(capsys.readouterr().err, "--max-positions 512 is smaller than --tokens-per-sample 1024")


def _truncated_checkpoint(tmp_path) -> Path:
    path = tmp_path / "checkpoint_last.pt"
    torch.save({"model": {"w": torch.zeros(1000)}, "cfg": None}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_truncated_checkpoint_names_the_file(tmp_path, capsys):
    path = _truncated_checkpoint(tmp_path)
    with pytest.raises(SystemExit) as e:
        validate.cli_main(["D", "--path", str(path)])
    assert e.value.code != 0
    _one_line(capsys.readouterr().err, f"{path}: truncated or not a checkpoint")


def test_resume_from_truncated_checkpoint(tmp_path, peer_dir, capsys):
    path = _truncated_checkpoint(tmp_path)
    with pytest.raises(SystemExit) as e:
        train.cli_main([str(peer_dir / "data-bin"), "-a", "roberta_tiny", "--batch-size", "8", "--cpu",
                        "--tokens-per-sample", "32", "--save-dir", str(tmp_path), "--log-format", "none",
                        "--optimizer", "adam"])
    assert e.value.code == 1
    _one_line(capsys.readouterr().err, f"{path}: truncated or not a checkpoint")


def test_export_hf_on_a_file_that_is_not_a_checkpoint(tmp_path):
    from fairseq_cli import export_hf

    bad = tmp_path / "notes.txt"
    bad.write_text("hello\n")
    not_fairseq = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(2)}, not_fairseq)
    for path, reason in ((bad, "truncated or not a checkpoint"), (not_fairseq, "not a fairseq checkpoint")):
        with pytest.raises(SystemExit) as e:  # sys.exit(message): printed on stderr, exit status 1
            export_hf.cli_main([str(path), str(tmp_path / "out")])
        _one_line(str(e.value.code), f"fairseq-export-hf: error: {path}: {reason}")


@pytest.mark.parametrize("argv,expected", [
    (["--task", "masked_lm", "--arch", "roberta_base"],
     ["--token-drop", "--sctd-interval", "--mask-prob", "--tokens-per-sample", "--encoder-layers", "--adam-betas"]),
    (["--criterion", "masked_lm", "--lr-scheduler", "polynomial_decay"],
     ["--total-num-update", "--end-learning-rate", "--warmup-updates", "--encoder-layers"]),
    (["--task", "sentence_prediction", "-a", "roberta_base"], ["--num-classes", "--init-token"]),
])
def test_help_lists_the_flags_of_the_chosen_components(argv, expected, capsys):
    with pytest.raises(SystemExit) as e:
        train.cli_main(argv + ["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert all(flag in out for flag in expected), [f for f in expected if f not in out]


def test_validate_help_lists_task_flags(capsys):
    with pytest.raises(SystemExit) as e:
        validate.cli_main(["--task", "masked_lm", "--help"])
    assert e.value.code == 0
    assert "--mask-prob" in capsys.readouterr().out
