"""Flags that used to be accepted and ignored, now with fairseq's meaning: --num-workers,
--keep-best-checkpoints, --keep-interval-updates-pattern, --spectral-norm-classification-head,
--required-seq-len-multiple, --empty-cache-freq, --wandb-project."""
import argparse
import logging
import sys
import types

import pytest
import torch

from fairseq import options, tasks
from fairseq.checkpoint.names import checkpoint_names, is_better, prune_checkpoints
from fairseq.data.data_utils import collate_tokens
from fairseq.logging import wandb_log
from fairseq.trainer import empty_cache_due
from fairseq_cli import train

TINY = ["-a", "roberta_base", "--encoder-layers", "2", "--encoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64",
        "--encoder-attention-heads", "2", "--tokens-per-sample", "64", "--sample-break-mode", "complete",
        "--cpu", "--seed", "3", "--log-format", "none", "--optimizer", "adam"]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def parse(argv):
    return options.parse_args_and_arch(options.get_training_parser(), [str(a) for a in argv])


def _same(a, b):
    if torch.is_tensor(a):
        return torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def _valid_iterator(peer_dir, num_workers, max_sentences=16):
    args = parse([peer_dir / "data-bin", *TINY, "--batch-size", str(max_sentences)])
    task = tasks.setup_task(args)
    task.load_dataset("valid")
    return task.get_batch_iterator(task.dataset("valid"), max_sentences=max_sentences, max_positions=64,
                                   ignore_invalid_inputs=True, seed=1, epoch=2, num_workers=num_workers)


def test_num_workers_gives_the_batches_of_the_main_process(peer_dir):
    torch.manual_seed(0)
    ref = list(_valid_iterator(peer_dir, 0).next_epoch_itr(shuffle=True))
    rng = torch.get_rng_state()
    got = list(_valid_iterator(peer_dir, 2).next_epoch_itr(shuffle=True))
    assert torch.equal(rng, torch.get_rng_state())  # workers leave the main process's RNG (dropout) alone
    assert len(ref) == len(got) > 3 and all(_same(a, b) for a, b in zip(ref, got))


def test_num_workers_resume_mid_epoch(peer_dir):
    ref = list(_valid_iterator(peer_dir, 0).next_epoch_itr(shuffle=True))
    epoch_itr = _valid_iterator(peer_dir, 2)
    itr = epoch_itr.next_epoch_itr(shuffle=True)
    first = [next(itr) for _ in range(3)]
    state = epoch_itr.state_dict()
    resumed = _valid_iterator(peer_dir, 2)
    resumed.load_state_dict(state)
    rest = list(resumed.next_epoch_itr(shuffle=True))
    assert state["iterations_in_epoch"] == 3 and all(_same(a, b) for a, b in zip(ref, first + rest))
    assert len(first + rest) == len(ref)


def test_training_with_workers_equals_training_in_process(peer_dir, tmp_path):
    def run(n):
        args = parse([peer_dir / "data-bin", *TINY, "--batch-size", "8", "--max-update", "3", "--num-workers", n,
                      "--lr", "1e-3", "--no-save", "--disable-validation", "--save-dir", tmp_path])
        return train.main(args).model.state_dict()

    a, b = run(0), run(2)
    assert all(torch.equal(a[k], b[k]) for k in a)


def _save_sequence(tmp_path, values, keep, maximize=False):
    args = argparse.Namespace(
        save_dir=str(tmp_path), no_epoch_checkpoints=True, save_interval=1, save_interval_updates=0,
        no_last_checkpoints=True, maximize_best_checkpoint_metric=maximize, checkpoint_suffix="",
        keep_interval_updates=-1, keep_last_epochs=-1, keep_best_checkpoints=keep, best_checkpoint_metric="loss")
    best, written = None, []
    for update, value in enumerate(values, 1):
        names = checkpoint_names(args, 1, update * 10, False, value, best)
        if best is None or is_better(args, value, best):
            best = value
        for name in names:
            (tmp_path / name).write_bytes(b"x")
        written.append(names)
        prune_checkpoints(args)
    return written, sorted(p.name for p in tmp_path.iterdir())


def test_keep_best_checkpoints_names_and_keeps_the_n_best(tmp_path):
    """fairseq 0.12.2: checkpoint.best_<metric>_<value:.3f><digit>.pt, the digit drawn by
    numpy_seed(epoch, updates, value); a value is written when it beats the worst one kept."""
    written, left = _save_sequence(tmp_path, [3.0, 2.0, 2.5, 4.0, 1.25], keep=2)
    assert written == [["checkpoint_best.pt", "checkpoint.best_loss_3.0000.pt"],
                       ["checkpoint_best.pt", "checkpoint.best_loss_2.0000.pt"],
                       ["checkpoint.best_loss_2.5001.pt"], [],
                       ["checkpoint_best.pt", "checkpoint.best_loss_1.2501.pt"]]
    assert left == ["checkpoint.best_loss_1.2501.pt", "checkpoint.best_loss_2.0000.pt", "checkpoint_best.pt"]


def test_keep_best_checkpoints_maximize(tmp_path):
    _, left = _save_sequence(tmp_path, [0.5, 0.7, 0.6, 0.9], keep=2, maximize=True)
    assert [n for n in left if n.startswith("checkpoint.best")] == ["checkpoint.best_loss_0.7001.pt",
                                                                   "checkpoint.best_loss_0.9001.pt"]


def test_keep_interval_updates_pattern(tmp_path):
    for u in (10, 20, 30, 40, 50, 60):
        (tmp_path / f"checkpoint_1_{u}.pt").write_bytes(b"x")
    args = argparse.Namespace(save_dir=str(tmp_path), checkpoint_suffix="", keep_interval_updates=2,
                              keep_interval_updates_pattern=20, keep_last_epochs=-1, keep_best_checkpoints=-1)
    prune_checkpoints(args)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint_1_20.pt", "checkpoint_1_30.pt", "checkpoint_1_40.pt", "checkpoint_1_50.pt", "checkpoint_1_60.pt"]


def test_spectral_norm_classification_head(peer_dir):
    from fairseq.models.roberta.model import RobertaClassificationHead

    torch.manual_seed(0)
    head = RobertaClassificationHead(16, 16, 3, spectral_norm=True).train()
    x = torch.randn(4, 5, 16)
    for _ in range(30):  # power iteration runs on each training forward
        head(x)
    head.eval()
    w = head.out_proj.weight
    assert abs(float(torch.linalg.matrix_norm(w.detach(), ord=2)) - 1.0) < 1e-3
    expected = torch.tanh(head.dense(x[:, 0])) @ w.T + head.out_proj.bias
    assert torch.allclose(head(x), expected, atol=1e-6)
    args = parse([peer_dir / "data-bin", *TINY, "--batch-size", "8", "--spectral-norm-classification-head"])
    model = tasks.setup_task(args).build_model(args)
    model.register_classification_head("h", num_classes=2)
    assert torch.nn.utils.parametrize.is_parametrized(model.classification_heads["h"].out_proj, "weight")
    from fairseq.models.roberta.model import fairseq_compatible_state_dict

    again = tasks.setup_task(args).build_model(args)
    again.load_state_dict(fairseq_compatible_state_dict(model), strict=True)  # the head is rebuilt from its keys
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_required_seq_len_multiple_pads_the_batch(peer_dir):
    values = [torch.tensor([5, 6, 7]), torch.tensor([8])]
    assert collate_tokens(values, 1, pad_to_multiple=8).tolist() == [[5, 6, 7, 1, 1, 1, 1, 1], [8, 1, 1, 1, 1, 1, 1, 1]]
    assert collate_tokens(values, 1, pad_to_multiple=3).shape == (2, 3) and collate_tokens(values, 1).shape == (2, 3)
    args = parse([peer_dir / "data-bin", *TINY, "--batch-size", "8", "--required-seq-len-multiple", "16"])
    task = tasks.setup_task(args)
    ds = task.load_dataset("valid")
    plain = task.load_dataset("valid")
    plain.pad_to_multiple = 1
    for ids in ([0, 1, 2], [5]):
        a, b = ds.collater([ds[i] for i in ids]), plain.collater([plain[i] for i in ids])
        t = b["net_input"]["src_tokens"].shape[1]
        assert a["net_input"]["src_tokens"].shape[1] % 16 == 0 and a["target"].shape == a["net_input"]["src_tokens"].shape
        assert torch.equal(a["net_input"]["src_tokens"][:, :t], b["net_input"]["src_tokens"])
        assert (a["net_input"]["src_tokens"][:, t:] == task.dictionary.pad()).all()


def test_empty_cache_freq_schedule():
    """fairseq empties the CUDA cache before updates 1, N+1, 2N+1, ... (a no-op on CPU, as in fairseq)."""
    assert [u for u in range(10) if empty_cache_due(u, 4)] == [1, 5, 9]
    assert not any(empty_cache_due(u, 0) for u in range(10))


class _StubRun:
    def __init__(self):
        self.logged, self.finished = [], False

    def log(self, data, step):
        self.logged.append((step, data))

    def finish(self):
        self.finished = True


def test_wandb_project_logs_to_wandb_offline(peer_dir, tmp_path, monkeypatch):
    run, inits = _StubRun(), []
    stub = types.ModuleType("wandb")
    stub.init = lambda **kw: inits.append(dict(kw, mode=__import__("os").environ.get("WANDB_MODE"))) or run
    monkeypatch.setitem(sys.modules, "wandb", stub)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_NAME", raising=False)
    monkeypatch.setattr(wandb_log, "_online", lambda *a, **k: False)
    monkeypatch.setattr(wandb_log, "_run", None)
    args = parse([peer_dir / "data-bin", *TINY, "--batch-size", "8", "--max-update", "2", "--log-interval", "1",
                  "--skip-invalid-size-inputs-valid-test",
                  "--wandb-project", "sctd", "--no-save", "--max-valid-steps", "1", "--save-dir", tmp_path / "run7"])
    train.main(args)
    assert inits == [{"project": "sctd", "name": "run7", "reinit": False, "mode": "offline"}]
    steps = [(s, sorted(d)) for s, d in run.logged]
    assert steps[0][0] == 1 and "train_inner/loss" in steps[0][1] and "train_inner/lr" in steps[0][1]
    assert any("valid/loss" in keys for _, keys in steps) and run.finished


def test_wandb_missing_warns_once(monkeypatch, caplog, tmp_path):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    monkeypatch.setattr(wandb_log, "_run", None)
    caplog.set_level(logging.WARNING)
    assert wandb_log.start("sctd", str(tmp_path)) is None
    assert [r.getMessage() for r in caplog.records if "--wandb-project" in r.getMessage()] == [
        "--wandb-project sctd: wandb is not installed (pip install wandb); not logging to W&B"]
