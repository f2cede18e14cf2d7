"""--tensorboard-logdir: fairseq 0.12.2's layout (so curves of both overlay), and a missing tensorboard is one
line at start-up naming the extra to install."""
import shlex
import sys

import pytest

from fairseq import options
from fairseq_cli import train

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

TINY = ("--encoder-layers 2 --encoder-embed-dim 16 --encoder-ffn-embed-dim 32 --encoder-attention-heads 2 "
        "--tokens-per-sample 32 --max-positions 32 --sample-break-mode complete")


def _argv(data, save, logdir):
    return shlex.split(f"{data} -a roberta_base {TINY} --batch-size 4 --optimizer adam --lr 1e-3 --max-update 4 --max-valid-steps 2 --skip-invalid-size-inputs-valid-test "
                       f"--validate-interval-updates 2 --log-interval 2 --log-format json --no-save "
                       f"--save-dir {save} --criterion masked_lm --tensorboard-logdir {logdir}")


def test_tags_are_fairseqs(peer_dir, tmp_path):
    """fairseq's TensorboardProgressBarWrapper: one SummaryWriter per tag under LOGDIR/<tag>, scalars keyed by the
    stat's own name (no `valid_` prefix), at step num_updates, and num_updates itself not written."""
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    logdir = tmp_path / "tb"
    train.main(options.parse_args_and_arch(options.get_training_parser(), _argv(peer_dir / "data-bin", tmp_path, logdir)))
    assert sorted(p.name for p in logdir.iterdir()) == ["train", "train_inner", "valid"]
    scalars = {}
    for tag in ("train_inner", "train", "valid"):
        acc = event_accumulator.EventAccumulator(str(logdir / tag))
        acc.Reload()
        scalars[tag] = {name: [e.step for e in acc.Scalars(name)] for name in acc.Tags()["scalars"]}
    assert scalars["train_inner"]["loss"] == [2, 4] and scalars["valid"]["loss"] == [2, 4]
    assert scalars["train"]["loss"] == [4]
    # the json line's keys (fairseq's stat names; `train_wall` is one, not a prefix), less num_updates
    trained = {"loss", "ppl", "wps", "ups", "wpb", "bsz", "lr", "gnorm", "train_wall", "wall"}
    assert set(scalars["train_inner"]) == set(scalars["train"]) == trained
    assert {"loss", "ppl", "wps", "wpb", "bsz"} <= set(scalars["valid"])
    assert not any(k.startswith("valid_") or k == "num_updates" for k in scalars["valid"])


def test_missing_tensorboard_is_one_line_before_any_work(peer_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if the package were not installed
    with pytest.raises(SystemExit) as e:
        train.cli_main(_argv(peer_dir / "data-bin", tmp_path / "save", tmp_path / "tb"))
    assert e.value.code == 1
    captured = capsys.readouterr()
    assert captured.err.strip() == ("fairseq-train: error: --tensorboard-logdir needs tensorboard, which is not "
                                    "installed: pip install -e '.[tensorboard]' (or pip install tensorboard)")
    assert "begin training" not in captured.out and "dictionary:" not in captured.out
    assert not (tmp_path / "tb").exists()
