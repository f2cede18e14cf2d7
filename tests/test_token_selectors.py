"""Token selection as a registry (fairseq/token_selectors.py): the built-in selectors and their flag,
random-LTD's per-layer kept sets and keep-count schedule, the model's per-layer path, fairseq-train with
random-LTD, and a --user-dir plugin's selector training with --token-drop."""
import argparse
from pathlib import Path

import pytest
import torch

from fairseq import options
from fairseq.data.dictionary import placeholder_dictionary
from fairseq.token_drop import (
    TokenDropper, TokenSelector, add_token_drop_args, drop_layer_split, register_token_selector,
    select_kept_positions, tie_break_keys,
)
from fairseq.token_selectors import SELECTORS, layer_keys, random_layer_subsets
from test_launch import train_in_process
from test_token_drop import PAD, random_batch, tiny_model

REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "examples" / "plugin" / "selector_plugin"
pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def parse(*argv, max_update=100):
    p = argparse.ArgumentParser()
    add_token_drop_args(p)
    args = p.parse_args(list(argv))
    args.seed, args.max_update, args.total_num_update = 1, max_update, None
    return args


def dropper(*argv, layers=6, **kw):
    return TokenDropper(parse(*argv, **kw), placeholder_dictionary(20), num_layers=layers)


# --------------------------------------------------------------------------- the table and its flag


def test_built_in_selectors_are_the_flags_choices_and_unknown_names_are_one_line():
    assert {"loss", "random", "random_ltd"} <= set(SELECTORS.choices())
    args = options.parse_args_and_arch(options.get_training_parser(), [
        "D", "--arch", "roberta_base", "--optimizer", "adam", "--batch-size", "8", "--token-drop-importance",
        "random_ltd"])
    assert args.token_drop_importance == "random_ltd"
    p = argparse.ArgumentParser()
    add_token_drop_args(p)
    action = next(a for a in p._actions if a.dest == "token_drop_importance")
    assert action.choices == SELECTORS.choices() and action.default == "loss"
    with pytest.raises(ValueError, match=r"unknown --token-drop-importance 'nope'; choose from: .*random_ltd"):
        SELECTORS.lookup("nope")
    with pytest.raises(ValueError, match="must extend TokenSelector"):
        register_token_selector("not_a_selector")(object)


@pytest.mark.parametrize("mode", ["loss", "random"])
def test_loss_and_random_selectors_are_the_selection_rule(mode):
    """The registered classes call the one rule with the dropper's table, specials, seed and keys."""
    d = dropper("--token-drop", "0.5", "--token-drop-importance", mode)
    gen = torch.Generator().manual_seed(3)
    d.importance.scores[4:19] = torch.rand(15, generator=gen) * 10
    src, ids = random_batch(gen), torch.arange(40, 46)
    keys = tie_break_keys(ids, src.size(1), d.seed, 7)
    expect = select_kept_positions(src, d.importance.scores, d.keep_count(src.size(1)), PAD, d.forced_keep_ids,
                                   tie_break=keys, mode=mode)
    assert torch.equal(d.keep_positions(src, ids, 7), expect)
    assert type(d.selector).__name__ == {"loss": "LossImportanceSelector", "random": "RandomSelector"}[mode]


# --------------------------------------------------------------------------- random-LTD


def test_random_ltd_keeps_the_scheduled_count_at_every_middle_layer_each_its_own_subset():
    d = dropper("--token-drop", "0.5", "--token-drop-importance", "random_ltd", "--token-drop-ramp-updates", "0")
    assert d.split == (1, 4) and d.selector.per_layer  # all middle layers of 6; first and last run whole
    gen = torch.Generator().manual_seed(4)
    src = random_batch(gen, B=6, T=24)
    src[2] = torch.randint(4, 18, (24,), generator=gen)  # one row without padding
    keep = d.keep_positions(src, torch.arange(6), 3)
    assert keep.shape == (4, 6, 12)  # [layers 1..4, B, K = 24 - 12]
    for layer in keep:
        for b, row in enumerate(layer):
            assert torch.equal(row, torch.sort(row).values) and len(set(row.tolist())) == 12
            real = int(src[b].ne(PAD).sum())
            assert sum(int(p) < real for p in row) == min(12, real)  # <pad> is dropped before any real token
    subsets = {tuple(keep[i, 2].tolist()) for i in range(4)}
    assert len(subsets) == 4  # a different subset per layer
    assert not all(0 in keep[i, 2].tolist() for i in range(4))  # no special position: <s> may be dropped
    # a pure function of (seed, update, sample id, position, layer): the same rows in another batch
    again = d.keep_positions(src[[2, 0]], torch.tensor([2, 0]), 3)
    assert torch.equal(again[:, 0], keep[:, 2]) and torch.equal(again[:, 1], keep[:, 0])
    assert not torch.equal(d.keep_positions(src, torch.arange(6), 4), keep)  # fresh subsets each update


def test_random_ltd_subsets_are_uniform():
    """Each position of a full row is kept by a layer with probability K / T (over samples and layers)."""
    T, K, n = 16, 4, 4
    src = torch.full((500, T), 7)
    keys = layer_keys(torch.arange(500), T, 1, 0, n)
    kept = random_layer_subsets(src, keys, K, PAD)
    freq = torch.bincount(kept.reshape(-1), minlength=T).float() / (500 * n)
    assert torch.allclose(freq, torch.full((T,), K / T), atol=0.03), freq


def test_keep_count_ramp_is_deepspeeds_fixed_linear_rounded_to_the_multiple():
    d = dropper("--token-drop", "0.75", "--token-drop-importance", "random_ltd", "--token-drop-ramp-updates", "10",
                "--token-drop-keep-multiple", "4")
    T, k0 = 64, 64 - 48
    for u in range(0, 14):
        k = k0 + (T - k0) * min(u, 10) // 10  # floor(K0 + (T - K0) * u / N)
        assert d.keep_count(T, u) == k - k % 4
    assert d.keep_count(T, 0) == 16 and d.keep_count(T, 5) == 40 and d.keep_count(T, 10) == 64
    src = torch.full((2, T), 7)
    assert d.keep_positions(src, torch.arange(2), 9).shape == (4, 2, 56)  # 16 + 48 * 9 // 10 = 59 -> 56
    assert d.keep_positions(src, torch.arange(2), 10) is None  # full length reached: the full model
    # random_ltd ramps over the whole run by default; the other selectors keep --token-drop constant
    assert dropper("--token-drop", "0.5", "--token-drop-importance", "random_ltd", max_update=40).ramp_updates == 40
    assert dropper("--token-drop", "0.5").ramp_updates == 0
    with pytest.raises(ValueError, match="random_ltd grows the kept count over the run: give --max-update"):
        dropper("--token-drop", "0.5", "--token-drop-importance", "random_ltd", max_update=0)


def layerwise_reference(model, src, keep, start):
    """Per sequence, without padding: each dropping layer runs on its kept real positions alone and writes
    them back; every other position keeps its state."""
    enc = model.encoder.sentence_encoder
    L, feats, locals_ = len(enc.layers), [], []
    for b in range(src.size(0)):
        n = int(src[b].ne(PAD).sum())
        tok = src[b:b + 1, :n]
        x = enc.embed(tok, tok.eq(PAD))
        for i in range(L):
            if start <= i < start + keep.size(0):
                kept = [int(t) for t in keep[i - start, b] if int(t) < n]
                x = x.clone()
                x[:, kept] = enc.layers[i](x[:, kept])
            else:
                x = enc.layers[i](x)
            if i == L - 2:
                locals_.append(x[0, 0])
        feats.append(x[0])
    return feats, torch.stack(locals_)


@pytest.mark.parametrize("layers,split", [(6, None), (5, "0,2")])
def test_model_runs_each_layer_on_its_own_kept_set(layers, split):
    model = tiny_model(layers, split)
    argv = ["--token-drop", "0.4", "--token-drop-importance", "random_ltd", "--token-drop-ramp-updates", "0"]
    d = dropper(*argv, *(["--token-drop-layers", split] if split else []), layers=layers)
    src = random_batch(torch.Generator().manual_seed(6), B=5, T=20)
    keep = d.keep_positions(src, torch.arange(5), 2)
    assert keep.size(0) == d.split[1] - d.split[0] + 1
    with torch.no_grad():
        x, extra = model(src, features_only=True, token_drop_keep=keep)
        feats, cls_local = layerwise_reference(model, src, keep, d.split[0])
    for b, ref in enumerate(feats):
        torch.testing.assert_close(x[b, :ref.size(0)], ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(extra["cls_local"], cls_local, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match=r"token_drop_keep \[n,B,K\] needs n = "):
        model(src, token_drop_keep=keep[:-1])


def test_every_position_kept_at_every_layer_is_the_full_model():
    model = tiny_model(6)
    src = random_batch(torch.Generator().manual_seed(8), B=3, T=12)
    keep = torch.arange(12).expand(4, 3, 12)
    with torch.no_grad():
        torch.testing.assert_close(model(src, token_drop_keep=keep)[0], model(src)[0], atol=1e-5, rtol=1e-5)


def test_layerwise_ideal_ratio_and_log_line():
    from fairseq.flops import encoder_layer_macs, layerwise_drop_step_ratio
    from fairseq.tasks.masked_lm import describe_schedule
    full = encoder_layer_macs(64, 64, 32, 128)
    assert layerwise_drop_step_ratio(6, 64, 32, 128, 64, 1, 4) == pytest.approx(1.0)
    assert layerwise_drop_step_ratio(6, 64, 32, 128, 16, 1, 4) == pytest.approx(
        (2 * full + 4 * encoder_layer_macs(16, 16, 32, 128)) / (6 * full))
    args = parse("--token-drop", "0.75", "--token-drop-importance", "random_ltd", "--sctd-interval", "0")
    args.encoder_layers, args.tokens_per_sample, args.encoder_embed_dim, args.encoder_ffn_embed_dim = 6, 64, 32, 128
    line = describe_schedule(args, TokenDropper(args, placeholder_dictionary(20), num_layers=6))
    ratio = layerwise_drop_step_ratio(6, 64, 32, 128, 16, 1, 4)
    assert (f"token dropping (random_ltd): layers 1-4 each keep their own 16 of 64 positions (ideal FLOP ratio of "
            f"a dropping update {ratio:.3f}), growing linearly to 64 by update 100, no ScTD") in line


def test_layerwise_split_default_and_errors():
    assert drop_layer_split(12, None, per_layer=True) == (1, 10)
    assert drop_layer_split(3, None, per_layer=True) == (1, 1)
    assert drop_layer_split(12, "0,10", per_layer=True) == (0, 10)
    with pytest.raises(ValueError, match="layerwise token dropping needs at least 3 encoder layers"):
        drop_layer_split(2, None, per_layer=True)
    with pytest.raises(ValueError, match="the last layer must run on all positions"):
        drop_layer_split(12, "1,11", per_layer=True)


# --------------------------------------------------------------------------- training


TINY = ["--task", "masked_lm", "--criterion", "masked_lm", "--arch", "roberta_base", "--encoder-layers", "4",
        "--encoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64", "--encoder-attention-heads", "2",
        "--optimizer", "adam", "--lr", "1e-3", "--tokens-per-sample", "32", "--sample-break-mode", "none",
        "--batch-size", "4", "--dropout", "0", "--attention-dropout", "0", "--cpu", "--seed", "3",
        "--disable-validation", "--log-format", "json", "--log-interval", "1", "--no-save"]


def test_fairseq_train_with_random_ltd_logs_the_growing_kept_count(peer_dir, tmp_path):
    trainer, logs = train_in_process([str(peer_dir / "data-bin"), *TINY, "--max-update", "4", "--token-drop", "0.75",
                                      "--token-drop-importance", "random_ltd", "--sctd-interval", "0",
                                      "--save-dir", str(tmp_path)])
    assert trainer.num_updates == 4 and type(trainer.task.token_dropper.selector).__name__ == "RandomLTDSelector"
    # T = 32 (break mode none: every block full), K(u) = floor(8 + 24 u / 4): dropped 24, 18, 12, 6 of 32
    assert [float(r["drop_rate"]) for r in logs] == [0.75, 0.562, 0.375, 0.188]


def test_a_plugin_selector_trains_with_token_drop(peer_dir, tmp_path):
    trainer, logs = train_in_process([str(peer_dir / "data-bin"), *TINY, "--max-update", "3", "--token-drop", "0.5",
                                      "--user-dir", str(PLUGIN), "--token-drop-importance", "frozen_importance",
                                      "--save-dir", str(tmp_path)])
    d = trainer.task.token_dropper
    assert type(d.selector).__name__ == "FrozenImportanceSelector" and isinstance(d.selector, TokenSelector)
    assert trainer.num_updates == 3 and all(float(r["drop_rate"]) == 0.5 for r in logs)
    assert "sctd_kl_local" in logs[0]  # the ScTD pass composes with any selector (update 0 is an ScTD update)
    # its choice: Hou's rule on the table as built, while the dropper's own table has moved on
    initial = TokenDropper(trainer.args, trainer.task.dictionary, 4).importance.scores
    assert torch.equal(d.selector.scores, initial) and not torch.equal(d.importance.scores, initial)
    src = random_batch(torch.Generator().manual_seed(2), B=4, T=32, V=len(trainer.task.dictionary))
    keys = tie_break_keys(torch.arange(4), 32, 3, 5)
    assert torch.equal(d.keep_positions(src, torch.arange(4), 5),
                       select_kept_positions(src, initial, 16, d.pad, d.forced_keep_ids, tie_break=keys))
