"""--checkpoint-activations recomputes each encoder layer in the backward; results must not change.

With dropout on, the recomputation has to replay the very same dropout masks (ours come from the cheap
16-bit sampler, which reads torch's CPU generator; torch.utils.checkpoint restores that state), so
gradients and trained weights are compared to the plain model at 1e-6, with token dropping and ScTD.
"""
import argparse
import types

import pytest
import torch

from fairseq import sctd
from fairseq.data.dictionary import placeholder_dictionary
from fairseq.models import build_model
from fairseq.registry import lookup
from fairseq.token_drop import TokenDropper, add_token_drop_args

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: tiny models, busy cores

V = 40


def tiny(checkpoint_activations: bool, layers: int = 4):
    args = argparse.Namespace(arch="roberta", encoder_layers=layers, encoder_embed_dim=16,
                              encoder_ffn_embed_dim=32, encoder_attention_heads=2, max_positions=32,
                              dropout=0.1, attention_dropout=0.1, activation_dropout=0.1,
                              criterion="masked_lm", checkpoint_activations=checkpoint_activations)
    torch.manual_seed(0)
    return build_model(args, placeholder_dictionary(V)), args


def sample(B=3, T=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, V - 1, (B, T), generator=g)
    src[:, 0] = 0
    src[1, 15:] = 1  # some padding, so the masked attention path runs too
    masked = (torch.rand(B, T, generator=g) < 0.3) & src.ne(1)
    masked[:, 0] = False
    target = torch.where(masked, src, torch.full_like(src, 1))
    src = src.masked_fill(masked, V - 1)
    return {"id": torch.arange(B), "net_input": {"src_tokens": src}, "target": target, "ntokens": int(src.ne(1).sum()),
            "nsentences": B}


def grads_after(model, fn, seed=5):
    model.zero_grad()
    torch.manual_seed(seed)
    fn(model).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("drop", [False, True])
def test_same_gradients_with_dropout_full_and_token_dropping(drop):
    s = sample()
    keep = torch.tensor([[0, 2, 3, 5, 8, 9, 12, 14, 16, 19]] * 3) if drop else None

    def loss(model):
        x, extra = model(s["net_input"]["src_tokens"], masked_tokens=s["target"].ne(1), token_drop_keep=keep)
        return x.float().logsumexp(-1).sum() + extra["cls_local"].sum()

    plain, _ = tiny(False)
    ckpt, _ = tiny(True)
    assert ckpt.encoder.sentence_encoder.checkpoint_activations
    g_plain, g_ckpt = grads_after(plain, loss), grads_after(ckpt, loss)
    assert g_plain.keys() == g_ckpt.keys()
    for n in g_plain:
        torch.testing.assert_close(g_ckpt[n], g_plain[n], rtol=0, atol=1e-6, msg=n)
    # the check has teeth: another dropout draw gives other gradients
    other = grads_after(plain, loss, seed=6)
    assert not torch.allclose(other["encoder.sentence_encoder.layers.0.fc1.weight"],
                              g_plain["encoder.sentence_encoder.layers.0.fc1.weight"])


def test_sctd_step_same_gradients_and_importance():
    """The ScTD update (token-dropping pass + full pass + KL) through the real criterion."""
    p = argparse.ArgumentParser()
    add_token_drop_args(p)
    targs = p.parse_args(["--token-drop", "0.5", "--sctd-interval", "1", "--sctd-weight", "0.5"])
    results = []
    for flag in (False, True):
        model, margs = tiny(flag)
        vocab = placeholder_dictionary(V)
        task = types.SimpleNamespace(source_dictionary=vocab, target_dictionary=vocab,
                                     token_dropper=TokenDropper(targs, vocab, num_layers=4))
        crit = lookup("criterion", "masked_lm").build_criterion(margs, task)
        torch.manual_seed(7)
        loss, _, log = sctd.train_step(task, sample(), model, crit, None, update_num=0)
        assert "sctd_kl_local" in log
        task.token_dropper.importance.apply()
        results.append((float(loss.detach()), {n: q.grad.clone() for n, q in model.named_parameters()},
                        task.token_dropper.importance.scores.clone()))
    (l0, g0, s0), (l1, g1, s1) = results
    assert l1 == pytest.approx(l0, rel=1e-6)
    for n in g0:
        torch.testing.assert_close(g1[n], g0[n], rtol=0, atol=1e-6, msg=n)
    torch.testing.assert_close(s1, s0, rtol=0, atol=1e-6)


def test_eval_and_no_grad_skip_checkpointing():
    model, _ = tiny(True)
    model.eval()
    src = sample()["net_input"]["src_tokens"]
    with torch.no_grad():
        a = model(src, features_only=True)[0]
    plain, _ = tiny(False)
    plain.eval()
    with torch.no_grad():
        b = plain(src, features_only=True)[0]
    assert torch.equal(a, b)


# --------------------------------------------------------------------------- through fairseq-train

TINY = ["--encoder-layers", "4", "--encoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64",
        "--encoder-attention-heads", "2", "--optimizer", "adam"]


def run_train(argv):
    from fairseq import options
    from fairseq_cli import train
    return train.main(options.parse_args_and_arch(options.get_training_parser(), argv))


def test_fairseq_train_same_weights_with_token_drop_sctd_and_update_freq(peer_dir, tmp_path):
    base = [str(peer_dir / "data-bin"), "--task", "masked_lm", "--arch", "roberta", *TINY,
            "--tokens-per-sample", "32", "--sample-break-mode", "complete", "--batch-size", "4",
            "--optimizer", "adam", "--lr", "1e-3", "--lr-scheduler", "polynomial_decay", "--warmup-updates", "0",
            "--total-num-update", "10", "--max-update", "4", "--update-freq", "2", "--dropout", "0.1",
            "--attention-dropout", "0.1", "--cpu", "--log-format", "none", "--disable-validation", "--no-save",
            "--token-drop", "0.5", "--sctd-interval", "2", "--seed", "3"]
    plain = run_train(base + ["--save-dir", str(tmp_path / "a")])
    ckpt = run_train(base + ["--save-dir", str(tmp_path / "b"), "--checkpoint-activations"])
    assert ckpt.model.encoder.sentence_encoder.checkpoint_activations and ckpt.num_updates == 4
    for (n, p), q in zip(plain.model.named_parameters(), ckpt.model.parameters()):
        torch.testing.assert_close(q, p, rtol=0, atol=1e-6, msg=n)
    torch.testing.assert_close(ckpt.task.token_dropper.importance.scores,
                               plain.task.token_dropper.importance.scores, rtol=0, atol=1e-6)


def test_offload_activations_is_a_clear_error(peer_dir, capsys):
    from fairseq_cli import train
    argv = [str(peer_dir / "data-bin"), "--arch", "roberta", *TINY, "--tokens-per-sample", "32",
            "--batch-size", "4", "--cpu", "--max-update", "1", "--no-save", "--offload-activations"]
    with pytest.raises(SystemExit) as e:
        train.cli_main(argv)
    assert e.value.code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("fairseq-train: error: --offload-activations: not implemented; --checkpoint-activations "
                       "alone cuts activation memory to one tensor per layer")
