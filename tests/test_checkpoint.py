"""Checkpoints: fairseq names and keep rules, atomic writes, interrupts, loading fairseq's files."""
import argparse
import shlex
import signal

import pytest
import torch

from fairseq import options, tasks
from fairseq.checkpoint.cfg import model_args_from_cfg
from fairseq.checkpoint.files import load_checkpoint_file
from fairseq.checkpoint.names import checkpoint_names, prune_checkpoints
from fairseq.checkpoint.restore import check_vocab
from fairseq.checkpoint.save import CheckpointManager
from fairseq.trainer import Trainer
from fairseq_cli import train

TINY = ("--encoder-layers 2 --encoder-embed-dim 32 --encoder-ffn-embed-dim 64 --encoder-attention-heads 2 "
        "--tokens-per-sample 64 --max-positions 64 --sample-break-mode complete --optimizer adam")


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def parse(argv):
    return options.parse_args_and_arch(options.get_training_parser(), shlex.split(argv))


def ckpt_args(**kw):
    base = dict(no_epoch_checkpoints=False, save_interval=1, save_interval_updates=0, no_last_checkpoints=False,
                maximize_best_checkpoint_metric=False, checkpoint_suffix="", keep_interval_updates=-1,
                keep_last_epochs=-1)
    base.update(kw)
    return argparse.Namespace(**base)


def test_names_follow_fairseq_rules():
    a = ckpt_args(save_interval_updates=10)
    assert checkpoint_names(a, 2, 20, False, None, None) == ["checkpoint_2_20.pt", "checkpoint_last.pt"]
    assert checkpoint_names(a, 2, 25, False, 3.0, None) == ["checkpoint_best.pt", "checkpoint_last.pt"]
    assert checkpoint_names(a, 2, 25, True, 3.0, 2.0) == ["checkpoint2.pt", "checkpoint_last.pt"]
    assert checkpoint_names(a, 2, 25, True, 2.0, 2.0) == ["checkpoint2.pt", "checkpoint_best.pt",
                                                                    "checkpoint_last.pt"]  # ties count
    b = ckpt_args(no_epoch_checkpoints=True, no_last_checkpoints=True, maximize_best_checkpoint_metric=True)
    assert checkpoint_names(b, 1, 5, True, 0.9, 0.8) == ["checkpoint_best.pt"]
    assert checkpoint_names(ckpt_args(save_interval=2), 3, 5, True, None, None) == ["checkpoint_last.pt"]


def test_keep_rules(tmp_path):
    for name in ["checkpoint_1_10.pt", "checkpoint_1_20.pt", "checkpoint_2_30.pt", "checkpoint_2_40.pt",
                 "checkpoint1.pt", "checkpoint2.pt", "checkpoint3.pt", "checkpoint_last.pt", "checkpoint_best.pt"]:
        (tmp_path / name).write_bytes(b"x")
    prune_checkpoints(ckpt_args(save_dir=str(tmp_path), keep_interval_updates=2, keep_last_epochs=1))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint3.pt", "checkpoint_2_30.pt", "checkpoint_2_40.pt", "checkpoint_best.pt", "checkpoint_last.pt"]


def _setup(peer_dir, save_dir, extra=""):
    args = parse(f"{peer_dir / 'data-bin'} -a roberta_base {TINY} --batch-size 4 --lr 1e-3 --max-update 10 "
                 f"--save-dir {save_dir} --criterion masked_lm {extra}")
    task = tasks.setup_task(args)
    model = task.build_model(args)
    trainer = Trainer(args, task, model, task.build_criterion(args))
    task.load_dataset("valid")
    args.train_subset = "valid"
    itr = trainer.get_train_iterator(1, load_dataset=False)
    return args, task, trainer, itr


def test_checkpoint_contents_and_weights_only(peer_dir, tmp_path):
    args, task, trainer, itr = _setup(peer_dir, tmp_path)
    batches = itr.next_epoch_itr()
    trainer.train_step([next(batches)])
    names = CheckpointManager(args).save(trainer, itr, 5.0, end_of_epoch=False)
    assert names == ["checkpoint_best.pt", "checkpoint_last.pt"]
    state = torch.load(tmp_path / "checkpoint_last.pt", weights_only=True)  # no allow-list needed
    assert list(state) == ["args", "cfg", "model", "criterion", "optimizer_history", "task_state", "extra_state",
                           "last_optimizer_state"]
    assert state["args"] is None and isinstance(state["cfg"]["model"], dict)
    hist = state["optimizer_history"][0]
    assert hist["criterion_name"] == "MaskedLmLoss" and hist["optimizer_name"] == "FairseqAdam"
    assert hist["num_updates"] == 1 and hist["lr_scheduler_state"] == {"lr": 1e-3}  # fixed's, as fairseq's
    assert state["extra_state"]["train_iterator"] == {"version": 2, "epoch": 1, "iterations_in_epoch": 1,
                                                      "shuffle": True}
    assert state["extra_state"]["val_loss"] == 5.0 and state["extra_state"]["best"] == 5.0
    assert "encoder.sentence_encoder.version" in state["model"]
    assert all(v.dtype == torch.float32 for v in state["model"].values() if v.is_floating_point())
    assert (tmp_path / "checkpoint_best.pt").read_bytes() == (tmp_path / "checkpoint_last.pt").read_bytes()
    assert (tmp_path / "checkpoint_best.pt").stat().st_ino != (tmp_path / "checkpoint_last.pt").stat().st_ino


def test_crash_during_save_keeps_previous_checkpoint(peer_dir, tmp_path, monkeypatch):
    args, task, trainer, itr = _setup(peer_dir, tmp_path)
    batches = itr.next_epoch_itr()
    trainer.train_step([next(batches)])
    mgr = CheckpointManager(args)
    mgr.save(trainer, itr, None, end_of_epoch=False)
    before = (tmp_path / "checkpoint_last.pt").read_bytes()
    trainer.train_step([next(batches)])
    real_save = torch.save

    def exploding_save(obj, f, *a, **k):
        f.write(b"partial garbage")
        raise RuntimeError("disk full (simulated)")
    monkeypatch.setattr(torch, "save", exploding_save)
    with pytest.raises(RuntimeError, match="simulated"):
        mgr.save(trainer, itr, None, end_of_epoch=False)
    monkeypatch.setattr(torch, "save", real_save)
    assert (tmp_path / "checkpoint_last.pt").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_last.pt"]  # no temp files left
    state = load_checkpoint_file(str(tmp_path / "checkpoint_last.pt"))
    assert state["optimizer_history"][0]["num_updates"] == 1


def test_sigterm_finishes_update_and_saves_last(peer_dir, tmp_path, monkeypatch):
    args = parse(f"{peer_dir / 'data-bin'} -a roberta_base {TINY} --batch-size 4 --lr 1e-3 --max-update 50 "
                 f"--save-dir {tmp_path} --disable-validation --log-format none")
    real = Trainer.train_step

    def step_then_signal(self, samples):
        out = real(self, samples)
        if self.num_updates == 2:
            train._on_signal(signal.SIGTERM, None)
        return out
    monkeypatch.setattr(Trainer, "train_step", step_then_signal)
    with pytest.raises(SystemExit) as e:
        train.main(args)
    assert e.value.code == 128 + signal.SIGTERM
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_last.pt"]
    state = load_checkpoint_file(str(tmp_path / "checkpoint_last.pt"))
    assert state["optimizer_history"][0]["num_updates"] == 2
    assert state["extra_state"]["train_iterator"]["iterations_in_epoch"] == 2


def test_loads_fairseq_checkpoint_and_rejects_vocab_mismatch(peer_dir, tmp_path):
    path = str(peer_dir / "checkpoint_last.no-optimizer-state.pt")
    state = load_checkpoint_file(path)
    assert isinstance(state["cfg"]["model"], argparse.Namespace)
    model_args = model_args_from_cfg(state["cfg"])
    assert model_args.arch == "roberta_base" and model_args.encoder_layers == 4
    (tmp_path / "data").mkdir()
    lines = (peer_dir / "data-bin" / "dict.txt").read_text().splitlines()[:100]
    (tmp_path / "data" / "dict.txt").write_text("\n".join(lines) + "\n")
    args = parse(f"{tmp_path / 'data'} -a roberta_base --optimizer adam --encoder-layers 4 --encoder-embed-dim 128 "
                 "--encoder-ffn-embed-dim 512 --encoder-attention-heads 4 --tokens-per-sample 128 --batch-size 8")
    task = tasks.setup_task(args)
    model = task.build_model(args)
    with pytest.raises(ValueError, match=r"vocabulary has 7713 entries but the dictionary \(with <mask>\) gives 105"):
        check_vocab(state, model, path)
    with pytest.raises(ValueError, match="bad.pt: truncated or not a checkpoint"):
        bad = tmp_path / "bad.pt"
        bad.write_bytes(b"not a checkpoint")
        load_checkpoint_file(str(bad))


def test_atomic_save_writes_complete_file_with_umask_permissions(tmp_path):
    import os
    import stat

    from fairseq.checkpoint.files import atomic_copy, atomic_save
    old = os.umask(0o022)
    try:
        atomic_save({"model": {"w": torch.arange(3.0)}}, str(tmp_path / "a.pt"))
        atomic_copy(str(tmp_path / "a.pt"), str(tmp_path / "b.pt"))
    finally:
        os.umask(old)
    for name in ("a.pt", "b.pt"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o644
        assert torch.equal(torch.load(tmp_path / name, weights_only=True)["model"]["w"], torch.arange(3.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "b.pt"]  # no temp files left
