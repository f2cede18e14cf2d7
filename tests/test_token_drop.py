"""Token dropping: flags, Hou split, keep count, selection rules, importance table (SPEC section 2)."""
import argparse
import math

import numpy as np
import pytest
import torch

from fairseq import options

from fairseq.data.dictionary import placeholder_dictionary
from fairseq.token_drop import (
    SPECIAL_SCORE, TokenDropper, TokenImportance, add_token_drop_args, check_keeps_real_tokens,
    drop_layer_split, gather_positions, keep_count, merge_positions, select_kept_positions, sctd_interval,
    tie_break_keys,
)

PAD = 1


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py
SPECIALS = [0, 2, 3, 19]  # <s>, </s>, <unk>, <mask> in a 20-symbol toy dictionary


def parse(*argv):
    p = argparse.ArgumentParser()
    add_token_drop_args(p)
    return p.parse_args(list(argv))


# --------------------------------------------------------------------------- flags and split


def test_flag_defaults_and_sctd_interval():
    a = parse()
    assert (a.token_drop, a.token_drop_importance, a.token_drop_layers) == (0.0, "loss", None)
    assert (a.token_importance_beta, a.sctd_weight, a.sctd_full_mlm_weight) == (0.95, 0.05, 0.0)
    assert sctd_interval(a) == 0
    assert sctd_interval(parse("--token-drop", "0.5")) == 10
    assert sctd_interval(parse("--token-drop", "0.5", "--sctd-interval", "0")) == 0
    assert sctd_interval(parse("--token-drop", "0.5", "--sctd-interval", "3")) == 3
    with pytest.raises(ValueError, match="--sctd-interval -1: must be >= 0"):
        train_parse("--token-drop", "0.5", "--sctd-interval", "-1")


def train_parse(*argv):
    """fairseq-train's own parsing, where every flag's domain is checked (fairseq/flag_rules.py)."""
    return options.parse_args_and_arch(options.get_training_parser(), [
        "data-bin-not-read", "--arch", "roberta_base", "--optimizer", "adam", "--batch-size", "8", *argv])


@pytest.mark.parametrize("bad", ["1.0", "-0.1", "1.5", "nan", "abc"])
def test_bad_rate_is_a_clear_cli_error(bad, capsys):
    with pytest.raises((SystemExit, ValueError)) as e:
        train_parse(f"--token-drop={bad}")
    err = capsys.readouterr().err if e.type is SystemExit else str(e.value)
    assert "--token-drop" in err and bad in err


def test_hou_split_and_layer_errors():
    assert drop_layer_split(12) == (5, 10)
    assert drop_layer_split(24) == (11, 22)
    assert drop_layer_split(4) == (1, 2)
    assert drop_layer_split(6, "1,3") == (1, 3)
    assert drop_layer_split(6, (2, 4)) == (2, 4)
    with pytest.raises(ValueError, match="at least 4 encoder layers"):
        drop_layer_split(3)
    with pytest.raises(ValueError, match="--token-drop-layers 2,5"):
        drop_layer_split(6, "2,5")  # END must leave the last layer full
    with pytest.raises(ValueError, match="--token-drop-layers 'x'"):
        drop_layer_split(6, "x")
    with pytest.raises(ValueError, match="at least 4 encoder layers"):
        TokenDropper(parse("--token-drop", "0.5"), placeholder_dictionary(20), num_layers=2)


def test_keep_count_and_no_real_token_error():
    assert keep_count(512, 0.5) == 256
    assert keep_count(513, 0.5) == 257
    assert keep_count(100, 0.29) == 71  # floor(28.999999...) would give 72 without the fuzz guard
    assert keep_count(10, 0.0) == 10
    assert check_keeps_real_tokens(512, 0.99) == 6
    with pytest.raises(ValueError, match=r"--token-drop 0.95: keeps 1 of 20"):
        check_keeps_real_tokens(20, 0.95)
    args = parse("--token-drop", "0.95")
    args.tokens_per_sample = 20
    with pytest.raises(ValueError, match="--token-drop 0.95"):
        TokenDropper(args, placeholder_dictionary(20), num_layers=4)


# --------------------------------------------------------------------------- selection


def slow_select(src, scores, K, forced, keys=None):
    """Obvious per-sequence reference: rank by (position 0, forced, -pad, score), then the smaller tie key
    (or the earlier position without keys); scores=None means every real token scores the same."""
    out = []
    for b in range(src.size(0)):
        keyed = []
        for t in range(src.size(1)):
            tok = int(src[b, t])
            s = 0.0 if scores is None else float(scores[tok])
            if tok in forced:
                s = SPECIAL_SCORE
            if tok == PAD:
                s = -math.inf
            if t == 0:
                s = math.inf
            keyed.append((-s, 0 if keys is None else int(keys[b, t]), t))
        keyed.sort()
        out.append(sorted(t for _, _, t in keyed[:K]))
    return torch.tensor(out)


def random_batch(gen, B=6, T=24, V=20):
    src = torch.randint(4, V - 1, (B, T), generator=gen)
    src[:, 0] = 0
    lengths = torch.randint(3, T + 1, (B,), generator=gen)
    lengths[0] = T
    for b in range(B):
        src[b, lengths[b] - 1] = 2
        src[b, lengths[b]:] = PAD
    mask = torch.rand(B, T, generator=gen) < 0.15
    src[mask & (src > 3)] = 19
    src[1, 0] = 5  # fairseq's masking may replace <s> by a random token: position 0 must still be kept
    return src


def test_selection_matches_slow_reference_and_rules():
    gen = torch.Generator().manual_seed(0)
    for trial in range(5):
        src = random_batch(gen)
        # few distinct values -> many ties, exercising the deterministic tie rule
        scores = torch.randint(0, 4, (20,), generator=gen).float()
        for p in (0.0, 0.3, 0.5, 0.75):
            K = keep_count(src.size(1), p)
            keep = select_kept_positions(src, scores, K, PAD, SPECIALS)
            assert keep.shape == (src.size(0), K) and keep.dtype == torch.long
            assert torch.equal(keep, slow_select(src, scores, K, set(SPECIALS)))
            assert torch.all(keep[:, 1:] > keep[:, :-1])  # sorted, no duplicates
            for b in range(src.size(0)):
                kept = set(keep[b].tolist())
                real = [t for t in range(src.size(1)) if src[b, t] != PAD]
                specials = [t for t in real if int(src[b, t]) in SPECIALS]
                if len(specials) <= K:
                    assert set(specials) <= kept  # specials never dropped
                if len(real) >= K:
                    assert set(kept) <= set(real)  # pad goes before any real token
                else:
                    assert set(real) <= kept
            if p == 0.0:
                assert torch.equal(keep, torch.arange(src.size(1)).expand_as(src))


def test_random_mode_and_tie_keys_obey_forced_rules_and_are_seeded():
    gen = torch.Generator().manual_seed(1)
    src = random_batch(gen, B=8, T=32)
    K = keep_count(32, 0.5)
    ids = torch.arange(100, 108)
    keys = tie_break_keys(ids, 32, seed=7, update_num=3)
    assert keys.dtype == torch.long and int(keys.min()) >= 0 and int(keys.max()) < 2 ** 31
    assert torch.equal(keys, tie_break_keys(ids, 32, seed=7, update_num=3))  # a pure function
    assert not torch.equal(keys, tie_break_keys(ids, 32, seed=8, update_num=3))
    assert not torch.equal(keys, tie_break_keys(ids, 32, seed=7, update_num=4))
    # a sample's keys do not depend on the batch it is in (one process == several ranks)
    assert torch.equal(keys[3:5], tie_break_keys(ids[3:5], 32, seed=7, update_num=3))
    k1 = select_kept_positions(src, None, K, PAD, SPECIALS, tie_break=keys, mode="random")
    assert torch.equal(k1, slow_select(src, None, K, set(SPECIALS), keys=keys))
    scores = torch.randint(0, 3, (20,), generator=gen).float()  # ties everywhere
    k2 = select_kept_positions(src, scores, K, PAD, SPECIALS, tie_break=keys)
    assert torch.equal(k2, slow_select(src, scores, K, set(SPECIALS), keys=keys))
    with pytest.raises(ValueError, match="needs tie_break"):
        select_kept_positions(src, None, K, PAD, SPECIALS, mode="random")


def test_equal_ids_are_kept_without_positional_bias_and_deterministically():
    """All ids equal: the old rule kept positions 0..K-1 of every row; now each of the T-1 free
    positions is kept with probability (K-1)/(T-1) over samples and updates."""
    B, T, p = 64, 16, 0.5
    args = parse("--token-drop", str(p))
    args.seed = 5
    d = TokenDropper(args, placeholder_dictionary(20), num_layers=4)
    src = torch.full((B, T), 7)
    src[:, 0] = 0
    K = d.keep_count(T)
    counts = torch.zeros(T)
    for u in range(40):
        keep = d.keep_positions(src, torch.arange(B), u)
        counts.index_add_(0, keep.reshape(-1), torch.ones(keep.numel()))
        if u == 0:
            assert not torch.equal(keep, torch.arange(K).expand(B, K))
            assert len({tuple(r) for r in keep.tolist()}) > B // 2  # rows differ
    draws = 40 * B
    assert counts[0] == draws  # <s> slot always kept
    freq = counts[1:] / draws
    expected = (K - 1) / (T - 1)
    assert float((freq - expected).abs().max()) < 0.05, freq  # binomial sd ~0.011 per position
    again = TokenDropper(args, placeholder_dictionary(20), num_layers=4)
    assert torch.equal(again.keep_positions(src, torch.arange(B), 3), d.keep_positions(src, torch.arange(B), 3))


def test_gather_and_merge_match_loops():
    x = torch.randn(3, 7, 5)
    keep = torch.tensor([[0, 2, 5], [1, 3, 6], [0, 1, 2]])
    g = gather_positions(x, keep)
    for b in range(3):
        assert torch.equal(g[b], x[b, keep[b]])
    assert torch.equal(gather_positions(x.transpose(0, 1), keep, dim=0), g.transpose(0, 1))
    y = torch.randn(3, 3, 5)
    m = merge_positions(x, y, keep)
    ref = x.clone()
    for b in range(3):
        ref[b, keep[b]] = y[b]
    assert torch.equal(m, ref)
    assert torch.equal(merge_positions(x.transpose(0, 1), y.transpose(0, 1), keep, dim=0), ref.transpose(0, 1))


# --------------------------------------------------------------------------- importance


def test_importance_update_formula_with_repeated_id():
    imp = TokenImportance(20, SPECIALS, PAD, beta=0.9)
    assert imp.scores[5] == 10.0 and imp.scores[0] == SPECIAL_SCORE and imp.scores[PAD] == -math.inf
    # two micro-batches of one update; id 7 occurs three times, id 9 once, pad targets are ignored
    imp.accumulate(torch.tensor([7, 9, 7]), torch.tensor([1.0, 4.0, 2.0]))
    imp.accumulate(torch.tensor([7, PAD, 0]), torch.tensor([6.0, 100.0, 50.0]))
    imp.apply()
    expected = torch.full((20,), 10.0)
    expected[7] = 0.9 * 10.0 + 0.1 * (1.0 + 2.0 + 6.0) / 3
    expected[9] = 0.9 * 10.0 + 0.1 * 4.0
    expected[SPECIALS] = SPECIAL_SCORE  # <s> was a target but stays pinned
    expected[PAD] = -math.inf
    assert torch.allclose(imp.scores, expected)
    assert imp.count.sum() == 0  # buffers reset
    imp.accumulate(torch.tensor([7]), torch.tensor([0.0]))
    imp.apply()
    assert torch.isclose(imp.scores[7], torch.tensor(0.9 * float(expected[7])))


def test_importance_state_dict_roundtrip_and_dropper_resume():
    args = parse("--token-drop", "0.5")
    a = TokenDropper(args, placeholder_dictionary(20), num_layers=4)
    a.importance.accumulate(torch.tensor([5, 6]), torch.tensor([3.0, 1.0]))
    a.importance.apply()
    src = random_batch(torch.Generator().manual_seed(2))
    ids = torch.arange(src.size(0))
    a.keep_positions(src, ids, 0)
    state = a.state_dict()
    b = TokenDropper(args, placeholder_dictionary(20), num_layers=4)
    b.load_state_dict(state)
    assert torch.equal(a.importance.scores, b.importance.scores)
    assert torch.equal(a.keep_positions(src, ids, 1), b.keep_positions(src, ids, 1))  # resumed == uninterrupted
    with pytest.raises(ValueError, match="21 entries, dictionary has 20"):
        b.importance.load_state_dict({"scores": torch.zeros(21)})


@pytest.mark.parametrize("ext", [".npy", ".pt", ".txt"])
def test_init_table_file_formats_and_wrong_size(tmp_path, ext):
    vals = np.arange(20, dtype=np.float32) / 2
    good, bad = tmp_path / f"good{ext}", tmp_path / f"bad{ext}"
    for path, v in ((good, vals), (bad, vals[:17])):
        if ext == ".npy":
            np.save(path, v)
        elif ext == ".pt":
            torch.save(torch.from_numpy(v), path)
        else:
            path.write_text("".join(f"{x}\n" for x in v))
    imp = TokenImportance(20, SPECIALS, PAD, init_path=str(good))
    expected = torch.from_numpy(vals).clone()
    expected[SPECIALS] = SPECIAL_SCORE
    expected[PAD] = -math.inf
    assert torch.equal(imp.scores, expected)
    with pytest.raises(ValueError, match=rf"--init-token-importance .*bad{ext}: has 17 values .* 20 entries"):
        TokenImportance(20, SPECIALS, PAD, init_path=str(bad))
    with pytest.raises(FileNotFoundError, match="--init-token-importance .*missing"):
        TokenImportance(20, SPECIALS, PAD, init_path=str(tmp_path / "missing.npy"))


def test_dropper_uses_table_and_specials():
    d = TokenDropper(parse("--token-drop", "0.5"), placeholder_dictionary(20), num_layers=12)
    assert d.split == (5, 10) and d.forced_keep_ids == [0, 2, 3, 19]
    assert d.is_sctd_update(0) and d.is_sctd_update(20) and not d.is_sctd_update(7)
    d.importance.scores[4:19] = torch.arange(15).float()  # higher id -> more important
    src = torch.tensor([[0, 4, 18, 5, 17, 19, 6, 2, PAD, PAD]])
    assert d.keep_positions(src, torch.tensor([0]), 0).tolist() == [[0, 2, 4, 5, 7]]


# --------------------------------------------------------------------------- with the RoBERTa model


def tiny_model(layers=6, split=None):
    from fairseq.models import build_model
    args = argparse.Namespace(arch="roberta", encoder_layers=layers, encoder_embed_dim=16,
                              encoder_ffn_embed_dim=32, encoder_attention_heads=2, max_positions=64,
                              token_drop_layers=split)
    torch.manual_seed(0)
    model = build_model(args, placeholder_dictionary(20))
    return model.eval()


def slow_dropping_reference(model, src, keep, split):
    """Per sequence, without padding: layers before d on all tokens; layer d computed in full and its
    kept rows taken (a query's output depends only on itself and all keys); layers d+1..end on the kept
    tokens alone; merge into the layer d-1 states; remaining layers on all tokens."""
    enc = model.encoder.sentence_encoder
    L, (d, end) = len(enc.layers), split
    feats, locals_ = [], []
    for b in range(src.size(0)):
        n = int(src[b].ne(PAD).sum())
        tok = src[b:b + 1, :n]
        x = enc.embed(tok, tok.eq(PAD))
        for i in range(d):
            x = enc.layers[i](x)
        kept = [int(t) for t in keep[b] if int(t) < n]
        h = enc.layers[d](x)[:, kept]
        for i in range(d + 1, end + 1):
            h = enc.layers[i](h)
        if end == L - 2:
            locals_.append(h[0, 0])
        x = x.clone()
        x[:, kept] = h
        for i in range(end + 1, L):
            x = enc.layers[i](x)
            if i == L - 2:  # contract: cls_local is position 0 after layer L-2
                locals_.append(x[0, 0])
        feats.append(x[0])
    return feats, torch.stack(locals_)


@pytest.mark.parametrize("layers,split,p", [(6, None, 0.5), (4, None, 0.3), (6, "1,3", 0.6)])
def test_selection_and_forward_match_per_sequence_reference(layers, split, p):
    model = tiny_model(layers, split)
    d = TokenDropper(parse("--token-drop", str(p)), placeholder_dictionary(20), num_layers=layers)
    d.split = drop_layer_split(layers, split)
    gen = torch.Generator().manual_seed(5)
    d.importance.scores[4:19] = torch.rand(15, generator=gen) * 10
    src = random_batch(gen, B=5, T=20)
    keep = d.keep_positions(src, torch.arange(src.size(0)), 0)
    with torch.no_grad():
        x, extra = model(src, features_only=True, token_drop_keep=keep)
        feats, cls_local = slow_dropping_reference(model, src, keep, d.split)
    for b, ref in enumerate(feats):
        torch.testing.assert_close(x[b, :ref.size(0)], ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(extra["cls_local"], cls_local, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(extra["cls_global"], x[:, 0])


def test_rate_zero_equals_plain_forward():
    model = tiny_model(6)
    src = random_batch(torch.Generator().manual_seed(9), B=4, T=16)
    d = TokenDropper(parse("--token-drop", "0.0"), placeholder_dictionary(20), num_layers=6)
    keep = d.keep_positions(src, torch.arange(4), 0)
    assert torch.equal(keep, torch.arange(16).expand(4, 16))
    with torch.no_grad():
        plain, ep = model(src)
        dropped, ed = model(src, token_drop_keep=keep)
    torch.testing.assert_close(dropped, plain, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ed["cls_local"], ep["cls_local"], atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------- schedule, flags, initial table


def test_schedule_phases_switch_exactly_at_the_stated_updates():
    args = parse("--token-drop", "0.5", "--sctd-interval", "3", "--token-drop-warmup-updates", "4",
                 "--token-drop-final-full-updates", "5")
    args.max_update, args.total_num_update = 20, 100  # --max-update wins when both are set
    d = TokenDropper(args, placeholder_dictionary(20), num_layers=4)
    full = [u for u in range(20) if d.is_full_update(u)]
    assert full == [0, 1, 2, 3, 15, 16, 17, 18, 19]
    assert [u for u in range(20) if d.is_sctd_update(u)] == [6, 9, 12]  # u % 3 == 0, dropping phase only
    args.max_update = 0  # only --total-num-update set: counted back from it
    assert TokenDropper(args, placeholder_dictionary(20), num_layers=4).total_updates == 100
    args.total_num_update = None
    with pytest.raises(ValueError, match="--token-drop-final-full-updates needs --max-update or --total-num-update"):
        TokenDropper(args, placeholder_dictionary(20), num_layers=4)
    plain = TokenDropper(parse("--token-drop", "0.5"), placeholder_dictionary(20), num_layers=4)
    assert not any(plain.is_full_update(u) for u in range(50)) and plain.total_updates is None


def test_schedule_log_line_names_the_phases_and_sctd_off():
    from fairseq.tasks.masked_lm import describe_schedule

    def line(*argv):
        args = parse("--token-drop", "0.5", *argv)
        args.encoder_layers, args.tokens_per_sample, args.encoder_embed_dim, args.encoder_ffn_embed_dim = 4, 16, 8, 32
        args.max_update, args.total_num_update = 20, None
        return describe_schedule(args, TokenDropper(args, placeholder_dictionary(20), num_layers=4))

    assert "ScTD every 10 updates, no full-model phases; ideal FLOP ratio of the 20-update schedule" in line()
    assert "no ScTD (vanilla token dropping), full model for updates u < 4 and u >= 15" in line(
        "--sctd-interval", "0", "--token-drop-warmup-updates", "4", "--token-drop-final-full-updates", "5")
    assert "full model for updates u >= 18;" in line("--token-drop-final-full-updates", "2")


@pytest.mark.parametrize("flag", ["--token-drop-warmup-updates", "--token-drop-final-full-updates"])
@pytest.mark.parametrize("bad", ["-1", "2.5"])
def test_bad_schedule_values_are_clear_cli_errors(peer_dir, flag, bad, capsys):
    from fairseq_cli import train
    with pytest.raises(SystemExit):
        train.cli_main([str(peer_dir / "data-bin"), "--task", "masked_lm", "--arch", "roberta_base",
                        "--optimizer", "adam", "--token-drop", "0.5", f"{flag}={bad}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag in err[0] and bad in err[0], err


def test_flags_without_token_drop_are_named():
    from fairseq.token_drop import unused_flags
    assert unused_flags(parse()) == []
    assert unused_flags(parse("--token-drop", "0.5", "--token-drop-warmup-updates", "3")) == []
    assert unused_flags(parse("--token-drop-warmup-updates", "3", "--sctd-kl-reduction", "mean")) == [
        "--sctd-kl-reduction", "--token-drop-warmup-updates"]


def test_initial_table_is_unigram_surprisal_of_dict_txt(peer_dir, tmp_path):
    from fairseq.data.dictionary import Dictionary
    vocab = Dictionary.load(str(peer_dir / "data-bin" / "dict.txt"))
    vocab.add_symbol("<mask>")
    d = TokenDropper(parse("--token-drop", "0.5"), vocab, num_layers=4)
    c = np.asarray(vocab.count, dtype=np.float64)
    expected = -np.log((c + 1) / (c.sum() + len(c)))
    words = np.arange(vocab.nspecial, len(vocab) - 1)
    np.testing.assert_allclose(d.importance.scores[words].numpy(), expected[words], rtol=1e-6)
    assert float(d.importance.scores[4]) < float(d.importance.scores[len(vocab) - 2])  # frequent < rare
    assert d.importance.scores[len(vocab) - 1] == SPECIAL_SCORE and d.importance.scores[PAD] == -math.inf
    table = torch.arange(len(vocab), dtype=torch.float32)  # --init-token-importance still overrides
    np.save(tmp_path / "t.npy", table.numpy())
    over = TokenDropper(parse("--token-drop", "0.5", "--init-token-importance", str(tmp_path / "t.npy")),
                        vocab, num_layers=4)
    assert torch.equal(over.importance.scores[words], table[words])
