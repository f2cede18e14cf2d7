"""Token-dropping schedules through fairseq-train: full-model warm-up and final phases switch exactly at
the stated updates (counted forwards per update and the drop_rate of every log line), drop_rate equals
1 - K/T while dropping, and a run resumed just before a switch equals the uninterrupted run bit for bit."""
import json

import pytest
import torch

from fairseq import flops, options, sctd
from fairseq.models.roberta import RobertaModel
from fairseq_cli import train

TINY = ["--task", "masked_lm", "--arch", "roberta", "--encoder-layers", "4", "--encoder-embed-dim", "16",
        "--encoder-ffn-embed-dim", "32", "--encoder-attention-heads", "2", "--tokens-per-sample", "32",
        "--sample-break-mode", "none", "--batch-size", "4", "--optimizer", "adam", "--lr", "1e-3",
        "--lr-scheduler", "polynomial_decay", "--warmup-updates", "0", "--dropout", "0", "--attention-dropout", "0",
        "--cpu", "--disable-validation", "--criterion", "masked_lm", "--seed", "4", "--token-drop", "0.3",
        "--sctd-interval", "3", "--token-drop-warmup-updates", "2", "--token-drop-final-full-updates", "2"]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def run(data, save_dir, *extra):
    args = options.parse_args_and_arch(options.get_training_parser(),
                                       [str(data), *TINY, "--save-dir", str(save_dir), *extra])
    return train.main(args)


def test_phases_switch_at_the_stated_updates_and_drop_rate_is_logged(peer_dir, tmp_path, monkeypatch, caplog):
    # per update: "u<n>", then one entry per model forward: "drop", "full", or "cls" (ScTD's full pass,
    # which with --sctd-full-mlm-weight 0 runs the last layer for <s> alone and no LM head)
    forwards = []
    compute_loss, model_forward = sctd.compute_loss, RobertaModel.forward

    def counting_compute_loss(dropper, sample, model, criterion, update_num, accumulate=True):
        forwards.append(f"u{update_num}")
        return compute_loss(dropper, sample, model, criterion, update_num, accumulate)

    def counting_forward(self, src_tokens, *args, token_drop_keep=None, cls_only=False, **kwargs):
        forwards.append("cls" if cls_only else "full" if token_drop_keep is None else "drop")
        return model_forward(self, src_tokens, *args, token_drop_keep=token_drop_keep, cls_only=cls_only, **kwargs)

    monkeypatch.setattr(sctd, "compute_loss", counting_compute_loss)
    monkeypatch.setattr(RobertaModel, "forward", counting_forward)
    caplog.set_level("INFO")
    trainer = run(peer_dir / "data-bin", tmp_path, "--max-update", "7", "--log-format", "json", "--log-interval", "1",
                  "--no-save")
    assert trainer.num_updates == 7
    # warm-up u < 2, dropping u = 2..4 with the ScTD pass at u = 3 (3 % 3 == 0), final full u >= 7 - 2
    assert " ".join(forwards) == "u0 full u1 full u2 drop u3 drop cls u4 drop u5 full u6 full"
    inner = [json.loads(r.getMessage()) for r in caplog.records if r.name == "train_inner"]
    T, K = 32, 32 - int(32 * 0.3)  # every batch is 32 wide with --sample-break-mode none
    drop = round(1 - K / T, 3)  # 9/32, fairseq's 3-digit rounding
    assert [float(r["drop_rate"]) for r in inner] == [0, 0, drop, drop, drop, 0, 0]
    assert [("sctd_kl_local" in r) for r in inner] == [False, False, False, True, False, False, False]
    assert list(inner[0])[:5] == ["epoch", "update", "loss", "ppl", "drop_rate"]
    epoch = [json.loads(r.getMessage()) for r in caplog.records if r.name == "train"]
    assert float(epoch[-1]["train_drop_rate"]) == round(3 * (1 - K / T) / 7, 3)  # all batches have B*T positions
    # the schedule's ideal FLOP ratio is the mean cost of exactly the forwards this run performed
    cost = {"drop": flops.token_drop_step_ratio(4, T, 16, 32, 0.3), "full": 1.0,
            "cls": (3 + flops.encoder_layer_macs(1, T, 16, 32) / flops.encoder_layer_macs(T, T, 16, 32)) / 4}
    ran = sum(cost[f] for f in forwards if f in cost) / 7
    assert flops.schedule_ideal_ratio(4, T, 16, 32, 0.3, 3, 7, 2, 2) == pytest.approx(ran, rel=1e-12)
    assert f"ideal FLOP ratio of the 7-update schedule {ran:.3f}" in caplog.text


def test_final_phase_needs_a_known_end(peer_dir, tmp_path):
    with pytest.raises(ValueError, match="--token-drop-final-full-updates needs --max-update or --total-num-update"):
        run(peer_dir / "data-bin", tmp_path, "--lr-scheduler", "fixed", "--max-epoch", "1")


@pytest.mark.parametrize("stop", [1, 3])  # the next update is the last warm-up one / the last dropping one
def test_resume_just_before_a_switch_equals_uninterrupted(peer_dir, tmp_path, stop):
    data = peer_dir / "data-bin"
    straight = run(data, tmp_path / "a", "--max-update", "6", "--log-format", "none", "--no-save")
    run(data, tmp_path / "b", "--max-update", "6", "--log-format", "none", "--save-interval-updates", str(stop),
        "--no-epoch-checkpoints")  # same --max-update, so the same schedule; its update-`stop` checkpoint
    resumed = run(data, tmp_path / "c", "--max-update", "6", "--log-format", "none", "--no-save",
                  "--restore-file", str(tmp_path / "b" / f"checkpoint_1_{stop}.pt"))
    assert resumed.num_updates == 6
    for (n, p), q in zip(straight.model.named_parameters(), resumed.model.parameters()):
        assert torch.equal(p, q), n
    assert torch.equal(straight.task.token_dropper.importance.scores, resumed.task.token_dropper.importance.scores)
