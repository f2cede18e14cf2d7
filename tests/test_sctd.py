"""ScTD train step (SPEC section 3): schedule, loss composition, KL direction, normalisation, ignore_grad.

The first half uses a tiny stand-in model/criterion that follows the contracts in ARCHITECTURE.md
(forward(..., token_drop_keep) -> (logits, extra with cls_local/cls_global); a fairseq-style criterion
criterion(model, sample) calling model(**sample["net_input"])), so the step logic is checked in isolation. Integration with the real RoBERTa model, criteria and
fairseq-train follows further down.
"""
import argparse
import math
import types

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from fairseq import sctd, token_drop
from fairseq.data.dictionary import placeholder_dictionary
from fairseq.token_drop import TokenDropper, add_token_drop_args, gather_positions, merge_positions

PAD, V, C = 1, 20, 8


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


class TinyModel(nn.Module):
    """Two 'layers' that mimic the split: the local layer runs on kept positions only when dropping."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(V, C)
        self.local = nn.Linear(C, C)
        self.glob = nn.Linear(C, C)
        self.head = nn.Linear(C, V)
        self.calls = []

    def _mix(self, x):
        """A crude attention stand-in: every position sees the mean of the positions it is given."""
        return torch.tanh(self.local(x + x.mean(dim=1, keepdim=True)))

    def forward(self, src_tokens, src_lengths=None, token_drop_keep=None, **unused):
        self.calls.append(token_drop_keep is not None)
        x = self.emb(src_tokens)
        if token_drop_keep is not None:
            h = self._mix(gather_positions(x, token_drop_keep))
            local = h[:, 0]
            x = merge_positions(x, h, token_drop_keep)
        else:
            x = self._mix(x)
            local = x[:, 0]
        g = torch.tanh(self.glob(x))
        return self.head(g), {"cls_local": local, "cls_global": g[:, 0]}


class TinyCriterion:
    """masked_lm-like, fairseq's signature: summed NLL over non-pad targets, sample_size = number of targets."""

    def __call__(self, model, sample, reduce=True):
        logits, _ = model(**sample["net_input"])
        tgt = sample["target"]
        m = tgt.ne(PAD)
        loss = F.cross_entropy(logits[m], tgt[m], reduction="sum")
        size = int(m.sum())
        return loss, size, {"loss": float(loss.detach()), "sample_size": size, "ntokens": sample["ntokens"]}


def crit_pass(crit, model, sample, keep=None):
    """The criterion on the dropping (keep) or the full forward, with that forward's extra (cls states)."""
    with sctd.ForwardCapture(model) as forward:
        loss, size, log = crit(model, sctd.with_kept_positions(sample, keep))
    return loss, size, log, forward.extra


def make_args(*argv):
    p = argparse.ArgumentParser()
    add_token_drop_args(p)
    return p.parse_args(["--token-drop", "0.5", *argv])


def make_sample(seed=0, B=3, T=12):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, V - 1, (B, T), generator=g)
    src[:, 0] = 0
    src[1, 9:] = PAD
    tgt = torch.full_like(src, PAD)
    for b, t in ((0, 3), (0, 5), (1, 2), (2, 7), (2, 8), (2, 10)):
        tgt[b, t] = src[b, t]
        src[b, t] = V - 1  # <mask>
    return {"id": torch.arange(B) + 10 * seed, "net_input": {"src_tokens": src, "src_lengths": src.ne(PAD).sum(1)},
            "target": tgt, "ntokens": int(src.ne(PAD).sum()), "nsentences": B}


def setup(*argv):
    torch.manual_seed(0)
    dropper = TokenDropper(make_args(*argv), placeholder_dictionary(V), num_layers=4)
    task = types.SimpleNamespace(token_dropper=dropper)
    return task, TinyModel(), TinyCriterion()


def hand_kl(h_full, h_drop):
    """KL(p_full || p_drop) = sum_b sum_c p_full log(p_full / p_drop), written out."""
    total = 0.0
    for b in range(h_full.size(0)):
        pf = torch.exp(h_full[b].double()) / torch.exp(h_full[b].double()).sum()
        pd = torch.exp(h_drop[b].double()) / torch.exp(h_drop[b].double()).sum()
        total += float((pf * (pf / pd).log()).sum())
    return total


def test_full_pass_runs_exactly_on_sctd_updates():
    task, model, crit = setup("--sctd-interval", "4")
    sample = make_sample()
    for u in range(13):
        model.calls.clear()
        _, _, log = sctd.train_step(task, sample, model, crit, None, update_num=u)
        assert model.calls == ([True, False] if u % 4 == 0 else [True])
        assert ("sctd_kl_local" in log) == (u % 4 == 0)
    task, model, crit = setup("--sctd-interval", "0")  # vanilla token dropping
    for u in range(3):
        model.calls.clear()
        sctd.train_step(task, sample, model, crit, None, update_num=u)
        assert model.calls == [True]


@pytest.mark.parametrize("w_full", [0.0, 0.5])
def test_loss_is_drop_plus_weighted_full_plus_kl_with_hand_kl(w_full):
    task, model, crit = setup("--sctd-full-mlm-weight", str(w_full), "--sctd-weight", "0.3")
    sample = make_sample()
    dropper = task.token_dropper
    keep = dropper.keep_positions(sample["net_input"]["src_tokens"], sample["id"], 0)
    with torch.no_grad():
        ld, sd, _, ed = crit_pass(crit, model, sample, keep)
        lf, sf, _, ef = crit_pass(crit, model, sample)
        loss, size, log = sctd.compute_loss(dropper, sample, model, crit, update_num=0)
    kl_l, kl_g = hand_kl(ef["cls_local"], ed["cls_local"]), hand_kl(ef["cls_global"], ed["cls_global"])
    kl_l_rev = hand_kl(ed["cls_local"], ef["cls_local"])
    assert kl_l > 0 and kl_g > 0 and abs(kl_l - kl_l_rev) > 1e-5  # direction matters (vs the 1e-6 below)
    assert log["sctd_kl_local"] == pytest.approx(kl_l, rel=1e-5, abs=1e-6)  # fp32 KL of O(1) terms
    assert log["sctd_kl_global"] == pytest.approx(kl_g, rel=1e-5, abs=1e-6)
    assert size == sd
    # after the trainer divides by sample_size: mean drop loss + w * mean full loss + lambda * summed KL / S
    expected = float(ld) / sd + w_full * float(lf) / sf + 0.3 * (kl_l + kl_g) / sd
    assert float(loss) / size == pytest.approx(expected, rel=1e-5)
    if w_full:
        assert log["sctd_full_loss"] == pytest.approx(float(lf), rel=1e-6)
    else:  # the full pass skips the LM head when its loss is not trained on
        assert "sctd_full_loss" not in log


def test_kl_helper_matches_hand_computation():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(4, 16, generator=g), torch.randn(4, 16, generator=g)
    assert float(sctd.cls_kl(a, b)) == pytest.approx(hand_kl(a, b), rel=1e-5)
    assert float(sctd.cls_kl(a, a)) == pytest.approx(0.0, abs=1e-6)


def test_gradients_flow_through_both_passes():
    task, model, crit = setup("--sctd-weight", "1.0")
    sample = make_sample()
    sctd.train_step(task, sample, model, crit, None, update_num=1)  # plain drop step
    g_plain = model.glob.weight.grad.clone()
    model.zero_grad()
    task.token_dropper.importance.reset()
    sctd.train_step(task, sample, model, crit, None, update_num=0)  # ScTD step
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert not torch.allclose(model.glob.weight.grad, g_plain)


def test_importance_fed_from_drop_pass_only_and_ignore_grad():
    task, model, crit = setup()
    sample = make_sample()
    imp = task.token_dropper.importance
    sctd.train_step(task, sample, model, crit, None, update_num=0)
    tgt = sample["target"][sample["target"].ne(PAD)]
    assert int(imp.count.sum()) == tgt.numel()  # one loss per masked position, not two on ScTD updates
    ids, counts = tgt.unique(return_counts=True)
    assert torch.equal(imp.count[ids], counts.double())
    imp.reset()
    model.zero_grad()
    loss, _, _ = sctd.train_step(task, sample, model, crit, None, update_num=0, ignore_grad=True)
    assert float(loss.detach()) == 0.0 and imp.count.sum() == 0
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.parameters())


def test_optimizer_backward_and_autocast_hooks_are_used():
    task, model, crit = setup()
    seen = {}

    class Opt:
        def backward(self, loss):
            seen["backward"] = float(loss.detach())
            loss.backward()

    class Ctx:
        def __enter__(self):
            seen["autocast"] = True

        def __exit__(self, *a):
            return False

    task.autocast_context = lambda optimizer: Ctx()
    loss, _, _ = sctd.train_step(task, make_sample(), model, crit, Opt(), update_num=0)
    assert seen == {"backward": float(loss.detach()), "autocast": True}


def test_reduce_metrics():
    logs = [{"sctd_kl_local": 0.3, "sctd_kl_global": 0.6, "sctd_full_loss": 4.0, "sctd_full_sample_size": 2,
             "sctd_nsentences": 3, "sctd_passes": 1},
            {"sctd_kl_local": 0.1, "sctd_kl_global": 0.2, "sctd_full_loss": 2.0, "sctd_full_sample_size": 4,
             "sctd_nsentences": 1, "sctd_passes": 1},
            {"loss": 1.0}]
    out = sctd.reduce_metrics(logs)
    assert out["sctd_kl_local"] == pytest.approx(0.1)
    assert out["sctd_kl_global"] == pytest.approx(0.2)
    assert out["sctd_full_loss"] == pytest.approx(1.0 / math.log(2))
    assert sctd.reduce_metrics([{"loss": 1.0}]) == {}
    no_full = [{k: v for k, v in lo.items() if not k.startswith("sctd_full")} for lo in logs]  # w_full = 0
    assert set(sctd.reduce_metrics(no_full)) == {"sctd_kl_local", "sctd_kl_global"}


# --------------------------------------------------------------------------- with the real model and criteria


def real_setup(criterion_name, *argv):
    from fairseq.models import build_model
    from fairseq.registry import lookup
    margs = argparse.Namespace(arch="roberta", encoder_layers=4, encoder_embed_dim=16, encoder_ffn_embed_dim=32,
                               encoder_attention_heads=2, max_positions=64, dropout=0.0, attention_dropout=0.0,
                               criterion=criterion_name, sentence_avg=False)
    torch.manual_seed(0)
    vocab = placeholder_dictionary(V)
    model = build_model(margs, vocab)
    task = types.SimpleNamespace(source_dictionary=vocab, target_dictionary=vocab,
                                 token_dropper=TokenDropper(make_args(*argv), vocab, num_layers=4))
    task.token_dropper.importance.scores[4:19] = torch.linspace(1, 9, 15)
    return task, model, lookup("criterion", criterion_name).build_criterion(margs, task)


@pytest.mark.parametrize("criterion_name", ["masked_lm", "cross_entropy"])
def test_real_criteria_normalisation_and_gradients_reach_every_parameter(criterion_name):
    task, model, crit = real_setup(criterion_name, "--sctd-weight", "0.5", "--sctd-full-mlm-weight", "0.5")
    sample = make_sample(B=4, T=16)
    dropper = task.token_dropper
    keep = dropper.keep_positions(sample["net_input"]["src_tokens"], sample["id"], 0)
    with torch.no_grad():
        ld, sd, _, ed = crit_pass(crit, model, sample, keep)
        lf, sf, _, ef = crit_pass(crit, model, sample)
    assert not torch.allclose(ed["cls_local"], ef["cls_local"])  # the drop pass really differs
    kl = hand_kl(ef["cls_local"], ed["cls_local"]) + hand_kl(ef["cls_global"], ed["cls_global"])
    expected = float(ld) / float(sd) + 0.5 * float(lf) / float(sf) + 0.5 * kl / float(sd)
    dropper.importance.reset()
    loss, size, log = sctd.train_step(task, sample, model, crit, None, update_num=0)
    assert float(loss.detach()) / float(size) == pytest.approx(expected, rel=1e-5)
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    for n, g in grads.items():
        assert g.abs().sum() > 0 and torch.isfinite(g).all(), n
    model.zero_grad()
    sctd.train_step(task, sample, model, crit, None, update_num=1)  # plain token-dropping update
    layer0 = "encoder.sentence_encoder.layers.0.fc1.weight"
    assert not torch.allclose(dict(model.named_parameters())[layer0].grad, grads[layer0])
    out = sctd.reduce_metrics([log])
    # KL at initialisation is ~1e-7 per sequence, so only a loose fp32 check here (the toy tests are exact)
    assert out["sctd_kl_local"] == pytest.approx(hand_kl(ef["cls_local"], ed["cls_local"]) / 4, abs=1e-7)


@pytest.mark.parametrize("criterion_name", ["masked_lm", "cross_entropy"])
def test_cls_only_full_pass_gives_the_full_models_cls_states_and_gradients(criterion_name):
    """w_full = 0: the full pass stops at what the KL reads (<s> alone in the last layer, no LM head);
    its <s> states, the loss and every gradient equal those of the whole full forward (dropout 0)."""
    task, model, crit = real_setup(criterion_name, "--sctd-weight", "0.5")
    sample = make_sample(B=4, T=16)  # row 1 is padded: the attention mask path
    src = sample["net_input"]["src_tokens"]
    x, cheap = model(src, cls_only=True)
    _, _, _, ef = crit_pass(crit, model, sample)
    assert x.shape == (4, 1, 16)
    assert torch.equal(cheap["cls_local"], ef["cls_local"])
    torch.testing.assert_close(cheap["cls_global"], ef["cls_global"], rtol=0, atol=1e-6)
    # the reference objective, written with the whole full forward
    dropper = task.token_dropper
    keep = dropper.keep_positions(src, sample["id"], 0)
    ld, sd, _, ed = crit_pass(crit, model, sample, keep)
    _, _, _, ef = crit_pass(crit, model, sample)
    objective = ld + 0.5 * (sctd.cls_kl(ef["cls_local"], ed["cls_local"]) + sctd.cls_kl(ef["cls_global"], ed["cls_global"]))
    model.zero_grad()
    objective.backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    dropper.importance.reset()
    loss, size, log = sctd.train_step(task, sample, model, crit, None, update_num=0)
    assert size == sd and float(loss.detach()) == pytest.approx(float(objective.detach()), rel=1e-6)
    assert "sctd_kl_global" in log and "sctd_full_loss" not in log
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected[n], rtol=1e-5, atol=1e-7, msg=n)
    with pytest.raises(ValueError, match="cls_only"):
        model(src, cls_only=True, token_drop_keep=keep)


# --------------------------------------------------------------------------- through fairseq-train


TINY = ["--encoder-layers", "4", "--encoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64",
        "--encoder-attention-heads", "2", "--optimizer", "adam"]


def run_train(argv):
    from fairseq import options
    from fairseq_cli import train
    args = options.parse_args_and_arch(options.get_training_parser(), argv)
    return train.main(args)


def test_papers_command_with_token_drop_runs_on_cpu(peer_dir, tmp_path, caplog):
    """SPEC section 1 flags as written (fp16 flags included), shrunk arch and lengths, 3 updates."""
    argv = [str(peer_dir / "data-bin"),
            "--train-subset", "train", "--valid-subset", "valid", "--skip-invalid-size-inputs-valid-test",
            "--memory-efficient-fp16", "--fp16-init-scale", "8",
            "--arch", "roberta_large", "--task", "masked_lm", "--sample-break-mode", "complete",
            "--batch-size", "4", "--tokens-per-sample", "32",
            "--save-interval", "1", "--save-interval-updates", "10000", "--keep-interval-updates", "25",
            "--no-epoch-checkpoints",
            "--optimizer", "adam", "--adam-betas", "(0.9, 0.999)", "--adam-eps", "1e-06", "--weight-decay", "0.01",
            "--clip-norm", "0.0", "--lr", "2e-4", "--lr-scheduler", "polynomial_decay", "--warmup-updates", "2",
            "--dropout", "0.1", "--token-drop", "0.5", "--max-positions", "32", "--attention-dropout", "0.1",
            "--update-freq", "2", "--ddp-backend=legacy_ddp",
            "--total-num-update", "3", "--max-update", "3", "--max-epoch", "40",
            "--save-dir", str(tmp_path), "--log-format", "json", "--log-interval", "1",
            "--disable-validation", *TINY]
    caplog.set_level("INFO")
    trainer = run_train(argv)
    assert trainer.num_updates == 3
    dropper = trainer.task.token_dropper
    assert dropper is not None and dropper.p == 0.5 and dropper.interval == 10
    scores = dropper.importance.scores
    initial = token_drop.unigram_importance(trainer.task.dictionary.count)
    words = torch.isfinite(scores) & (scores < 1e4)
    assert (scores[words] != initial[words]).sum() > 10  # ids seen as targets moved towards their loss
    assert "sctd_kl_local" in caplog.text  # update 0 was an ScTD update and its KL was logged
    state = torch.load(tmp_path / "checkpoint_last.pt", weights_only=True)
    assert torch.equal(state["task_state"]["token_dropper"]["importance"]["scores"], scores)
    assert not any("importance" in k or "token_drop" in k for k in state["model"])  # not part of the model


def test_resume_with_token_drop_and_update_freq_equals_uninterrupted(peer_dir, tmp_path):
    base = [str(peer_dir / "data-bin"), "--task", "masked_lm", "--arch", "roberta", *TINY,
            "--tokens-per-sample", "32", "--sample-break-mode", "complete", "--batch-size", "4",
            "--optimizer", "adam", "--lr", "1e-3", "--lr-scheduler", "polynomial_decay", "--warmup-updates", "0",
            "--total-num-update", "10", "--update-freq", "2", "--dropout", "0", "--attention-dropout", "0",
            "--cpu", "--log-format", "none", "--disable-validation", "--save-interval-updates", "2",
            "--token-drop", "0.5", "--sctd-interval", "3", "--criterion", "masked_lm", "--seed", "3"]
    full = run_train(base + ["--max-update", "4", "--save-dir", str(tmp_path / "a")])
    run_train(base + ["--max-update", "2", "--save-dir", str(tmp_path / "b")])
    resumed = run_train(base + ["--max-update", "4", "--save-dir", str(tmp_path / "b")])
    assert resumed.num_updates == 4
    assert torch.equal(resumed.task.token_dropper.importance.scores, full.task.token_dropper.importance.scores)
    for (n, p), q in zip(full.model.named_parameters(), resumed.model.parameters()):
        torch.testing.assert_close(q, p, rtol=0, atol=1e-6, msg=n)


def test_skipped_update_discards_its_importance_losses(peer_dir):
    """An fp16 overflow skips the update; its per-token losses must not leak into the next EMA step."""
    from fairseq import options
    from fairseq.tasks import setup_task
    argv = [str(peer_dir / "data-bin"), "--task", "masked_lm", "--arch", "roberta_base", *TINY,
            "--tokens-per-sample", "64", "--max-positions", "64", "--batch-size", "2", "--token-drop", "0.5"]
    args = options.parse_args_and_arch(options.get_training_parser(), argv)
    task = setup_task(args)
    task.build_model(args)
    imp = task.token_dropper.importance
    before = imp.scores.clone()
    imp.accumulate(torch.tensor([10, 10, 11]), torch.tensor([1.0, 3.0, 5.0]))
    task.discard_update()
    task.after_update(1)
    assert torch.equal(imp.scores, before)
    imp.accumulate(torch.tensor([10]), torch.tensor([2.0]))
    task.after_update(2)
    assert float(imp.scores[10]) == pytest.approx(0.95 * float(before[10]) + 0.05 * 2.0)


def test_a_criterion_that_bypasses_net_input_is_an_error_not_a_silent_full_model():
    task, model, _ = setup()

    def src_tokens_only(model, sample, reduce=True):  # drops sample["net_input"]'s other entries
        logits, _ = model(sample["net_input"]["src_tokens"])
        return logits.sum(), 1, {"loss": 0.0, "sample_size": 1}

    with pytest.raises(ValueError, match=r"must call the model once as model\(\*\*sample\['net_input'\]"):
        sctd.train_step(task, make_sample(), model, src_tokens_only, None, update_num=1)
