"""Weight EMA (--store-ema, fairseq.models.ema) in fairseq-train, composed with token dropping and ScTD:
the average equals a float64 reference, a resumed run equals the uninterrupted one bit for bit (weights,
average, validation), and the checkpoint carries the average as fairseq 0.12.2 does."""
import json
import shlex

import pytest
import torch

from fairseq import checkpoint_utils
from fairseq.checkpoint.files import load_checkpoint_file
from fairseq.checkpoint.restore import load_into_trainer
from fairseq_cli import train, validate
from test_train import TINY, _tiny_trainer, parse  # the training tests' model size, parser and trainer

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

TOKEN_DROP = "--criterion masked_lm --token-drop 0.5 --sctd-interval 2"
VALID = "--validate-interval-updates 2 --max-valid-steps 2 --skip-invalid-size-inputs-valid-test"


def _run(data, save, max_update, extra=""):
    """fairseq_cli.train.main on the tiny model with token dropping, ScTD and the EMA, validating every 2 updates."""
    argv = shlex.split(f"{data} -a roberta_base {TINY} --batch-size 4 --update-freq 2 --lr 1e-3 --seed 5 "
                       f"--max-update {max_update} --save-interval-updates 3 --log-interval 1 --log-format json "
                       f"--save-dir {save} {TOKEN_DROP} {VALID} --store-ema --ema-decay 0.6 "
                       f"--ema-update-freq 2 --ema-start-update 3 {extra}")
    return train.main(parse(argv))


def _logged(caplog, name):
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == name]


@pytest.mark.parametrize("fp32", ["", "--ema-fp32"])
def test_resumed_ema_run_equals_uninterrupted(peer_dir, tmp_path, caplog, fp32):
    """Stopped at update 3 (the --ema-update-freq 2 counter half full, after --ema-start-update) and resumed
    to 5: weights, the average and every logged train/valid value equal the run that never stopped."""
    data = peer_dir / "data-bin"
    caplog.set_level("INFO")
    straight = _run(data, tmp_path / "a", 5, fp32)
    inner_a, valid_a = _logged(caplog, "train_inner"), _logged(caplog, "valid")
    caplog.clear()
    _run(data, tmp_path / "b", 3, fp32)
    saved = load_checkpoint_file(str(tmp_path / "b" / "checkpoint_last.pt"))
    assert saved["extra_state"]["ema_update_freq_counter"] == 1
    resumed = _run(data, tmp_path / "b", 5, fp32)
    inner_b, valid_b = _logged(caplog, "train_inner"), _logged(caplog, "valid")
    volatile = ("wps", "ups", "train_wall", "wall", "valid_wps")
    strip = lambda recs: [{k: v for k, v in r.items() if k not in volatile} for r in recs]  # noqa: E731
    assert len(inner_a) == 5 and strip(inner_a) == strip(inner_b)
    assert [r["ema_decay"] for r in inner_a] == ["0", "0", "0.6", "0.6", "0.6"]  # decay 0 before update 3
    assert len(valid_a) == 4 and strip(valid_a) == strip(valid_b)  # updates 2, 3 (a save), 4, 5
    for (na, pa), (nb, pb) in zip(straight.model.named_parameters(), resumed.model.named_parameters()):
        assert na == nb and torch.equal(pa, pb), na
    ema_a, ema_b = straight.ema.get_model().state_dict(), resumed.ema.get_model().state_dict()
    assert ema_a.keys() == ema_b.keys()
    for k in ema_a:
        assert torch.equal(ema_a[k], ema_b[k]), k
    assert straight.ema.fp32_params.keys() == resumed.ema.fp32_params.keys()
    assert bool(straight.ema.fp32_params) == bool(fp32)
    for k in straight.ema.fp32_params:
        assert torch.equal(straight.ema.fp32_params[k], resumed.ema.fp32_params[k]), k
    moved = [k for k, v in ema_a.items() if not torch.equal(v, straight.model.state_dict()[k])]
    assert moved  # the average lags the weights: the test would notice an EMA that copies the model


def test_ema_equals_float64_reference(peer_dir):
    """Five updates with token dropping + ScTD, --ema-decay 0.8 --ema-start-update 3 --ema-update-freq 2: the
    average is built after update 1, averages at updates 2 (decay 0: a copy, before the start) and 4."""
    args, task, trainer = _tiny_trainer(peer_dir / "data-bin", f"{TOKEN_DROP} --store-ema --ema-decay 0.8 "
                                                                "--ema-start-update 3 --ema-update-freq 2")
    itr = trainer.get_train_iterator(1).next_epoch_itr(shuffle=True)
    snapshots = {}
    for u in range(1, 6):
        assert trainer.train_step([next(itr)]) is not None and trainer.num_updates == u
        snapshots[u] = {k: v.detach().double().clone() for k, v in trainer.model.state_dict().items()}
    reference = {k: 0.8 * snapshots[2][k] + 0.2 * snapshots[4][k] for k in snapshots[4]}
    averaged = trainer.ema.get_model().state_dict()
    assert averaged.keys() == reference.keys() and trainer.ema.get_decay() == 0.8
    for k, ref in reference.items():
        torch.testing.assert_close(averaged[k].double(), ref, rtol=0, atol=1e-6, msg=k)
    assert not any(p.requires_grad for p in trainer.ema.get_model().parameters())


def test_checkpoint_ema_loads_with_fairseqs_reader_and_validates(peer_dir, tmp_path, caplog):
    """extra_state["ema"] has the checkpoint model's (fairseq's) keys; load_ema_from_checkpoint returns it as
    "model", a fresh model loads it strictly, and save_ema_as_checkpoint makes a file fairseq-validate reads."""
    data = peer_dir / "data-bin"
    trainer = _run(data, tmp_path, 3, "--ema-decay 0.5 --ema-start-update 0 --ema-update-freq 1")
    path = tmp_path / "checkpoint_last.pt"
    saved = load_checkpoint_file(str(path))
    state = checkpoint_utils.load_ema_from_checkpoint(str(path))
    assert list(state["model"]) == list(saved["model"])  # fairseq's layout, version and BetterTransformer copies
    expected = trainer.ema.get_model().fairseq_state_dict()
    for k, v in state["model"].items():
        assert torch.equal(v, expected[k]), k
    assert any(not torch.equal(v, saved["model"][k]) for k, v in state["model"].items())
    (model,), _, _ = checkpoint_utils.load_model_ensemble_and_task([str(path)], state=state)
    for k, v in trainer.ema.get_model().state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    checkpoint_utils.save_ema_as_checkpoint(str(path), str(tmp_path / "ema.pt"))
    losses = []
    for name in ("checkpoint_last.pt", "ema.pt"):
        (res,) = validate.main(validate.parse_args([str(data), "--path", str(tmp_path / name), "--max-valid-steps",
                                                    "2", "--skip-invalid-size-inputs-valid-test"]))
        losses.append(res["loss"])
    assert losses[0] != losses[1]  # the average is evaluated, not the last weights
    # --ema-seed-model: the average starts from that file's average (built after update 1, then one step)
    args, task, seeded = _tiny_trainer(data, f"{TOKEN_DROP} --store-ema --ema-decay 0.5 --ema-seed-model {path}")
    seeded.train_step([next(seeded.get_train_iterator(1).next_epoch_itr(shuffle=True))])
    for k, v in seeded.ema.get_model().state_dict().items():
        ref = 0.5 * state["model"][k].double() + 0.5 * seeded.model.state_dict()[k].double()
        torch.testing.assert_close(v.double(), ref, rtol=0, atol=1e-6, msg=k)


def test_ema_without_a_checkpointed_average_starts_from_the_model(peer_dir, tmp_path, caplog):
    """fairseq's rule: resuming with --store-ema from a checkpoint that has no average restarts it from the
    checkpoint's weights (and says so)."""
    data = peer_dir / "data-bin"
    argv = shlex.split(f"{data} -a roberta_base {TINY} --batch-size 4 --lr 1e-3 --max-update 1 --disable-validation "
                       f"--save-dir {tmp_path} {TOKEN_DROP}")
    train.main(parse(argv))
    saved = load_checkpoint_file(str(tmp_path / "checkpoint_last.pt"))
    args, task, trainer = _tiny_trainer(data, f"{TOKEN_DROP} --store-ema --ema-fp32")
    caplog.set_level("WARNING")
    load_into_trainer(trainer, str(tmp_path / "checkpoint_last.pt"))
    assert any("EMA not found in checkpoint" in r.getMessage() for r in caplog.records)
    for k, v in trainer.ema.get_model().state_dict().items():
        assert torch.equal(v, trainer.model.state_dict()[k]) and torch.equal(trainer.ema.fp32_params[k], v), k
    assert trainer.num_updates == saved["optimizer_history"][-1]["num_updates"] == 1


def test_ema_flags_need_store_ema_and_a_seed_file(peer_dir, tmp_path, caplog):
    base = f"{peer_dir / 'data-bin'} -a roberta_base {TINY} --batch-size 4"
    caplog.set_level("WARNING")
    args = parse(shlex.split(f"{base} --ema-decay 0.99 --ema-fp32"))
    assert not args.store_ema
    assert any("--ema-decay, --ema-fp32 has no effect without --store-ema" in r.getMessage() for r in caplog.records)
    with pytest.raises(FileNotFoundError, match=r"--ema-seed-model: checkpoint not found: .*nope.pt"):
        parse(shlex.split(f"{base} --store-ema --ema-seed-model {tmp_path / 'nope.pt'}"))
    with pytest.raises(ValueError, match=r"--store-ema is not supported with --ddp-backend fully_sharded"):
        parse(shlex.split(f"{base} --store-ema --ddp-backend fully_sharded"))
    with pytest.raises(ValueError, match=r"--ema-decay 1.5: must be in \[0, 1\]"):
        parse(shlex.split(f"{base} --store-ema --ema-decay 1.5"))
