"""fairseq-train end to end: fairseq's optimizer trace, the paper's command, resume, clear errors."""
import json
import re
import shlex

import numpy as np
import pytest
import torch

from fairseq import options, tasks
from fairseq.checkpoint.restore import load_into_trainer, resolve_restore_path
from fairseq.trainer import Trainer
from fairseq_cli import train

TINY = ("--encoder-layers 4 --encoder-embed-dim 32 --encoder-ffn-embed-dim 64 --encoder-attention-heads 2 "
        "--tokens-per-sample 64 --max-positions 64 --sample-break-mode complete --optimizer adam")


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def parse(argv):
    return options.parse_args_and_arch(options.get_training_parser(), [str(a) for a in argv])


@pytest.mark.parametrize("trace", ["ft3", "ft3_warmup0"])
def test_updates_match_fairseq_trace(peer_dir, trace):
    """Updates 1..3 from the fixture checkpoint (dropout 0, --reset-*): fairseq's batches, losses,
    gradient norms, lrs, Adam moments and parameters."""
    ref = json.loads((peer_dir / "reference" / f"train_trace_{trace}.json").read_text())
    params_ref = np.load(peer_dir / "reference" / f"train_trace_{trace}_selected_params.npz")
    ckpt = str(peer_dir / "checkpoint_last.no-optimizer-state.pt")
    flags = [ckpt if f.endswith("checkpoint_last.no-optimizer-state.pt") else f for f in ref["flags"]]
    args = parse([str(peer_dir / "data-bin")] + flags)
    task = tasks.setup_task(args)
    model = task.build_model(args)
    trainer = Trainer(args, task, model, task.build_criterion(args))
    path, finetune = resolve_restore_path(args)
    assert path == ckpt and not finetune
    load_into_trainer(trainer, path, args.reset_optimizer, args.reset_lr_scheduler, args.reset_meters)
    assert trainer.num_updates == 0
    task.load_dataset("train")
    itr = trainer.get_train_iterator(1, load_dataset=False).next_epoch_itr(shuffle=True)
    named = dict(model.named_parameters())
    names = sorted({k.split("__")[0] for k in params_ref.files})
    for u in range(1, 4):
        rec = ref["records"][u]
        batch = next(itr)
        assert batch["id"].tolist() == rec["batch_ids"][0]
        assert trainer.get_lr() == rec["lr_used_for_this_update"]
        out = trainer.train_step([batch])
        step = rec["task_train_step"][0]
        assert float(out["log"]["loss"]) == pytest.approx(step["loss_sum"], rel=1e-6)
        assert int(out["log"]["sample_size"]) == step["sample_size"]
        assert float(out["gnorm"]) == pytest.approx(rec["grad_norm"][0], rel=1e-5)
        assert trainer.get_lr() == rec["lr_after_update_as_logged"]
        for n in names:
            np.testing.assert_allclose(named[n].detach().numpy(), params_ref[f"{n}__after_update{u}"],
                                       rtol=0, atol=1e-6, err_msg=f"{n} after update {u}")
        state = trainer.optimizer.optimizer.state
        for n, norms in rec["adam_state_norms"].items():
            if n not in named:
                continue
            s = state[named[n]]
            assert s["step"] == norms["step"]
            assert float(s["exp_avg"].double().norm()) == pytest.approx(norms["exp_avg_norm"], rel=1e-4, abs=1e-9)
        used = [p for p in model.parameters() if p in state]
        total = float(torch.stack([p.detach().double().norm() for p in used]).norm())
        assert total == pytest.approx(rec["total_norm_used_params"], rel=1e-7)


def _json_records(log_path):
    out = []
    pat = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \| INFO \| (train_inner|train|valid) \| (\{.*\})$")
    for line in log_path.read_text().splitlines():
        m = pat.match(line)
        if m:
            out.append((m.group(1), json.loads(m.group(2))))
    return out


def test_paper_command_runs_shrunk(peer_dir, tmp_path):
    """SPEC section 1's command, every flag (token dropping + ScTD on), arch shrunk for CPU."""
    from tests.test_options import PAPER

    save = tmp_path / "ckpt"
    argv = shlex.split(PAPER.replace("DATA", str(peer_dir / "data-bin")).replace("SAVE", str(save)))
    argv += shlex.split("--encoder-layers 4 --encoder-embed-dim 64 --encoder-ffn-embed-dim 128 "
                        "--encoder-attention-heads 2 --tokens-per-sample 128 --max-positions 128 --max-update 4 "
                        "--total-num-update 4 --save-interval-updates 2 --warmup-updates 2 --log-interval 1 "
                        f"--max-valid-steps 2 --log-file {tmp_path / 'train.log'}")
    train.cli_main(argv)
    files = sorted(p.name for p in save.iterdir())
    assert files == ["checkpoint_1_2.pt", "checkpoint_1_4.pt", "checkpoint_best.pt", "checkpoint_last.pt"]
    recs = _json_records(tmp_path / "train.log")
    inner = [r for t, r in recs if t == "train_inner"]
    assert [r["num_updates"] for r in inner] == ["1", "2", "3", "4"]
    keys = list(inner[1])
    assert keys == ["epoch", "update", "loss", "ppl", "drop_rate", "wps", "ups", "wpb", "bsz", "num_updates", "lr",
                    "gnorm", "train_wall", "wall"]
    assert "sctd_kl_local" in inner[0] and "sctd_kl_global" in inner[0]  # update 1 is an ScTD update
    assert [r["lr"] for r in inner] == ["0.0001", "0.0002", "0.0001", "0"]
    assert all(isinstance(r["epoch"], int) and isinstance(r["update"], float) for r in inner)
    valid = [r for t, r in recs if t == "valid"]
    assert list(valid[0]) == ["epoch", "valid_loss", "valid_ppl", "valid_wps", "valid_wpb", "valid_bsz",
                              "valid_num_updates"]
    assert list(valid[1])[-1] == "valid_best_loss" and len(valid) == 2
    summary = [r for t, r in recs if t == "train"]
    assert len(summary) == 1 and list(summary[0])[:3] == ["epoch", "train_loss", "train_ppl"]
    state = torch.load(save / "checkpoint_last.pt", weights_only=True)
    assert state["optimizer_history"][-1]["num_updates"] == 4
    assert state["extra_state"]["train_iterator"]["iterations_in_epoch"] == 8  # batches, update_freq 2
    assert "token_dropper" in state["task_state"]


def _run(data, save, max_update, extra=""):
    argv = shlex.split(f"{data} -a roberta_base {TINY} --batch-size 4 --update-freq 2 --lr 1e-3 "
                       f"--lr-scheduler polynomial_decay --warmup-updates 2 --total-num-update 4 "
                       f"--max-update {max_update} --disable-validation --log-interval 1 --log-format json "
                       f"--save-dir {save} --criterion masked_lm --token-drop 0.5 --sctd-interval 2 {extra}")
    return train.main(parse(argv))


def test_resume_equals_uninterrupted(peer_dir, tmp_path, caplog):
    data = peer_dir / "data-bin"
    caplog.set_level("INFO")
    straight = _run(data, tmp_path / "a", 4, "--no-save")
    losses_a = [json.loads(r.getMessage())["loss"] for r in caplog.records if r.name == "train_inner"]
    caplog.clear()
    _run(data, tmp_path / "b", 2)
    resumed = _run(data, tmp_path / "b", 4)
    losses_b = [json.loads(r.getMessage())["loss"] for r in caplog.records if r.name == "train_inner"]
    assert len(losses_a) == 4 and losses_a == losses_b
    assert resumed.num_updates == 4
    for (na, pa), (nb, pb) in zip(straight.model.named_parameters(), resumed.model.named_parameters()):
        assert na == nb and torch.equal(pa, pb), na
    sa, sb = straight.optimizer.state_dict(), resumed.optimizer.state_dict()
    assert sa["param_groups"] == sb["param_groups"] and sa["state"].keys() == sb["state"].keys()
    for k in sa["state"]:
        assert sa["state"][k]["step"] == sb["state"][k]["step"]
        assert torch.equal(sa["state"][k]["exp_avg_sq"], sb["state"][k]["exp_avg_sq"])
    assert torch.equal(straight.task.token_dropper.importance.scores, resumed.task.token_dropper.importance.scores)


def _tiny_trainer(data, extra=""):
    args = parse(shlex.split(f"{data} -a roberta_base {TINY} --batch-size 4 --lr 1e-3 --max-update 5 "
                             f"--criterion masked_lm {extra}"))
    task = tasks.setup_task(args)
    model = task.build_model(args)
    return args, task, Trainer(args, task, model, task.build_criterion(args))


def test_nan_loss_is_a_clear_error(peer_dir):
    args, task, trainer = _tiny_trainer(peer_dir / "data-bin")
    task.load_dataset("valid")
    ds = task.dataset("valid")
    batch = ds.collater([ds[i] for i in range(4) if ds.size(i) <= 64] or [ds[0]])
    real = trainer.criterion.forward

    def nan_forward(*a, **k):
        loss, size, log = real(*a, **k)
        return loss * float("nan"), size, log
    trainer.criterion.forward = nan_forward
    with pytest.raises(FloatingPointError, match=r"at update 1 .*lower --lr or a --clip-norm"):
        trainer.train_step([batch])


def test_clear_errors_for_data_and_positions(peer_dir, tmp_path):
    args, task, _ = _tiny_trainer(peer_dir / "data-bin")
    with pytest.raises(FileNotFoundError, match=r"data-bin/test\.bin/\.idx"):
        task.load_dataset("test")
    with pytest.raises(ValueError, match=r"--max-positions 32 is smaller than --tokens-per-sample 64"):
        a = parse(shlex.split(f"{peer_dir / 'data-bin'} -a roberta_base {TINY} --max-positions 32 --batch-size 4"))
        tasks.setup_task(a).build_model(a)
    with pytest.raises(FileNotFoundError, match=r"dictionary not found: .*dict\.txt"):
        a = parse(shlex.split(f"{tmp_path} -a roberta_base {TINY} --batch-size 4"))
        tasks.setup_task(a)
    with pytest.raises(FileNotFoundError, match=r"--restore-file not found: nope\.pt"):
        a = parse(shlex.split(f"{peer_dir / 'data-bin'} -a roberta_base {TINY} --batch-size 4 "
                              f"--restore-file nope.pt --save-dir {tmp_path}"))
        resolve_restore_path(a)
