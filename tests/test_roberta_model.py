"""RobertaModel: fairseq numerics, state dicts, archs, and the token-dropping path vs a slow reference."""
import argparse
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fairseq.checkpoint.cfg import model_args_from_cfg
from fairseq.checkpoint.files import load_checkpoint_file
from fairseq.data.dictionary import Dictionary, placeholder_dictionary
from fairseq.models import ARCH_REGISTRY, add_model_args, build_model, get_arch
from fairseq.models.roberta import RobertaModel, fairseq_compatible_state_dict
from fairseq.models.roberta.model import vocab_logits
from fairseq.modules.transformer_layer import cheap_dropout, drop_mask, drop_threshold, dropout_add

V = 53


def tiny(layers=4, dim=16, heads=2, ffn=32, maxpos=32, **kw):
    torch.manual_seed(0)
    args = argparse.Namespace(arch="roberta_base", encoder_layers=layers, encoder_embed_dim=dim,
                              encoder_ffn_embed_dim=ffn, encoder_attention_heads=heads, max_positions=maxpos,
                              dropout=0.0, attention_dropout=0.0, **kw)
    m = RobertaModel.build_model(args, placeholder_dictionary(V))
    # LayerNorm params are 1/0 at init: perturb them so the test sees their use
    with torch.no_grad():
        for n, p in m.named_parameters():
            if "norm" in n:
                p.add_(0.1 * torch.randn_like(p))
    return m.eval()


def batch(B=3, T=12, lengths=(12, 9, 5), seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(4, V, (B, T), generator=g)
    x[:, 0] = 0
    for b, n in enumerate(lengths):
        x[b, n - 1] = 2
        x[b, n:] = 1
    return x


# ---------------------------------------------------------------- fairseq fixture
def _model_args(st):
    return model_args_from_cfg(st["cfg"])


@pytest.fixture(scope="module")
def fixture_model(peer_dir):
    st = load_checkpoint_file(str(peer_dir / "checkpoint_last.no-optimizer-state.pt"))
    d = Dictionary.load(str(peer_dir / "data-bin" / "dict.txt"))
    d.add_symbol("<mask>")
    m = RobertaModel.build_model(_model_args(st), d)
    m.load_state_dict(st["model"])
    return m.eval(), st


@pytest.mark.parametrize("name", ["A", "B"])
def test_fixture_reproduces_fairseq_outputs(fixture_model, peer_dir, name):
    m, _ = fixture_model
    z = np.load(peer_dir / "reference" / f"model_outputs_batch{name}.npz")
    src = torch.from_numpy(z["src_tokens"])
    tol = dict(atol=1e-5, rtol=0)
    with torch.no_grad():
        feats, extra = m(src, features_only=True, return_all_hiddens=True)
        logits, _ = m(src)
        masked, _ = m(src, masked_tokens=torch.from_numpy(z["target"]).ne(1))
    np.testing.assert_allclose(feats.numpy(), z["features"], **tol)
    np.testing.assert_allclose(torch.logsumexp(logits, -1).numpy(), z["logits_logsumexp"], **tol)
    np.testing.assert_allclose(logits.max(-1).values.numpy(), z["logits_max"], **tol)
    orig = torch.from_numpy(z["original_tokens"])
    np.testing.assert_allclose(logits.gather(-1, orig[..., None])[..., 0].numpy(), z["logits_at_original_token"],
                               **tol)
    cols = torch.from_numpy(z["logits_column_subset_ids"])
    np.testing.assert_allclose(logits[:, :, cols].numpy(), z["logits_column_subset"], **tol)
    # argmax: equal wherever the top-2 gap is not a float tie
    top2 = logits.topk(2, -1).values
    clear = (top2[..., 0] - top2[..., 1]) > 1e-4
    assert torch.equal(logits.argmax(-1)[clear], torch.from_numpy(z["logits_argmax"])[clear])
    np.testing.assert_allclose(torch.logsumexp(masked, -1).numpy(), z["masked_logits_logsumexp"], **tol)
    pos = torch.from_numpy(z["masked_positions"])
    tgt = torch.from_numpy(z["target"])[pos[:, 0], pos[:, 1]]
    np.testing.assert_allclose(masked.gather(-1, tgt[:, None])[:, 0].numpy(), z["masked_logits_at_target"], **tol)
    if name == "A":
        ref = z["inner_states_TBC"]
        assert len(extra["inner_states"]) == ref.shape[0]
        for ours, theirs in zip(extra["inner_states"], ref):
            np.testing.assert_allclose(ours.numpy(), theirs, **tol)
        rows = list(z["logits_full_rows"])
        np.testing.assert_allclose(logits[rows].numpy(), z["logits_rows_0_and_last"], **tol)
        np.testing.assert_allclose(masked.numpy(), z["masked_logits"], **tol)
        assert extra["inner_states"][0][src.t().eq(1)].abs().max() == 0  # embeddings zeroed at pads


def test_fairseq_compatible_state_dict_keys_match_fixture(fixture_model):
    m, st = fixture_model
    sd = fairseq_compatible_state_dict(m)
    assert list(sd.keys()) == list(st["model"].keys())  # same set, same order
    for k, v in st["model"].items():
        assert sd[k].shape == v.shape and sd[k].dtype == v.dtype, k
    assert torch.equal(sd["encoder.sentence_encoder.version"], torch.tensor([3.0]))
    assert sd["encoder.sentence_encoder.layers.0.in_proj_weight"].abs().sum() == 0
    # round trip: our fairseq-style dict and our plain dict both load into a fresh model
    m2 = RobertaModel.build_model(_model_args(st), _SizedDict(len(m.encoder.lm_head.bias)))
    m2.load_state_dict(sd)
    m3 = RobertaModel.build_model(_model_args(st), _SizedDict(len(m.encoder.lm_head.bias)))
    m3.load_state_dict(m.state_dict())
    x = torch.tensor([[0, 5, 6, 7, 2, 1]])
    with torch.no_grad():
        a, b, c = m(x)[0], m2.eval()(x)[0], m3.eval()(x)[0]
    assert torch.equal(a, b) and torch.equal(a, c)
    assert m2.encoder.lm_head.weight is m2.encoder.sentence_encoder.embed_tokens.weight


class _SizedDict:
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def pad(self):
        return 1


# ---------------------------------------------------------------- basic behaviour
def test_masked_projection_equals_full_rows():
    m = tiny()
    x = batch()
    masked = torch.zeros_like(x, dtype=torch.bool)
    masked[0, [1, 4, 7]] = True
    masked[2, 2] = True
    with torch.no_grad():
        full, _ = m(x)
        part, _ = m(x, masked_tokens=masked)
    assert part.shape == (4, V)
    torch.testing.assert_close(part, full[masked], rtol=0, atol=1e-6)


def test_param_names_shapes_and_init():
    args = argparse.Namespace(arch="roberta_tiny", tokens_per_sample=40)
    m = RobertaModel.build_model(args, placeholder_dictionary(V))
    sd = m.state_dict()
    assert sd["encoder.sentence_encoder.embed_positions.weight"].shape == (42, 128)
    assert sd["encoder.sentence_encoder.embed_positions.weight"][1].abs().sum() == 0
    assert sd["encoder.sentence_encoder.embed_tokens.weight"][1].abs().sum() == 0
    assert sd["encoder.sentence_encoder.layers.1.self_attn.q_proj.weight"].shape == (128, 128)
    assert sd["encoder.sentence_encoder.layers.1.fc1.weight"].shape == (512, 128)
    assert sd["encoder.lm_head.bias"].abs().sum() == 0
    w = sd["encoder.sentence_encoder.layers.0.fc1.weight"]
    assert abs(float(w.std()) - 0.02) < 0.002 and sd["encoder.sentence_encoder.layers.0.fc1.bias"].abs().sum() == 0
    names = [n for n, _ in m.named_parameters()]
    assert names.index("encoder.sentence_encoder.layers.0.self_attn.k_proj.weight") < \
        names.index("encoder.sentence_encoder.layers.0.self_attn.q_proj.weight")  # fairseq's order
    assert "encoder.lm_head.weight" not in names  # tied: counted once


def test_classification_head_and_extra():
    m = tiny()
    m.register_classification_head("cls", num_classes=3)
    x = batch()
    with torch.no_grad():
        out, extra = m(x, classification_head_name="cls")
        feats, extra2 = m(x, features_only=True, return_all_hiddens=True)
    head = m.classification_heads["cls"]
    ref = head.out_proj(torch.tanh(head.dense(feats[:, 0])))
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(extra2["cls_global"], feats[:, 0])
    torch.testing.assert_close(extra2["cls_local"], extra2["inner_states"][-2][0])  # after layer L-2
    assert extra["inner_states"] is None
    # a state dict holding a head registers it on load
    m2 = tiny()
    m2.load_state_dict(m.state_dict())
    assert m2.classification_heads["cls"].out_proj.out_features == 3


def test_arch_registry_and_flags():
    p = argparse.ArgumentParser()
    add_model_args(p)
    a = p.parse_args(["--encoder-layers", "3"])
    # unset model flags are absent (fairseq's argparse.SUPPRESS), so an arch's getattr default applies
    assert not any(hasattr(a, k) for k in ("encoder_embed_dim", "dropout", "untie_weights_roberta"))
    get_arch("roberta_large")(a)
    assert (a.encoder_layers, a.encoder_embed_dim, a.encoder_ffn_embed_dim, a.encoder_attention_heads) == \
        (3, 1024, 4096, 16)
    assert a.max_positions == 512 and a.dropout == 0.1 and a.activation_dropout == 0.0
    b = argparse.Namespace(tokens_per_sample=128, dropout=0.0)
    ARCH_REGISTRY["roberta_base"](b)
    assert b.max_positions == 128 and b.dropout == 0.0 and b.encoder_layers == 12
    c = argparse.Namespace()
    ARCH_REGISTRY["roberta_tiny"](c)
    assert (c.encoder_layers, c.encoder_embed_dim, c.encoder_ffn_embed_dim, c.encoder_attention_heads) == \
        (2, 128, 512, 2)
    with pytest.raises(ValueError, match="unknown --arch 'nope'; choose from: .*roberta_base"):
        get_arch("nope")
    m = build_model(argparse.Namespace(arch="roberta_tiny", max_positions=16), placeholder_dictionary(V))
    assert m.max_positions() == 16
    with pytest.raises(ValueError, match="exceeds --max-positions 16"):
        m(torch.zeros(1, 17, dtype=torch.long))


def test_untied_head():
    m = tiny(untie_weights_roberta=True)
    assert m.encoder.lm_head.weight is not m.encoder.sentence_encoder.embed_tokens.weight
    assert m.encoder.lm_head.weight.shape == (V, 16)


# ---------------------------------------------------------------- token dropping
def _ref_layer(layer, xq, xkv, key_ok):
    """One post-LN layer for a single sequence, with explicit per-head attention."""
    att = layer.self_attn
    H, D = att.num_heads, att.head_dim
    q = (xq @ att.q_proj.weight.T + att.q_proj.bias) * D ** -0.5
    k = xkv @ att.k_proj.weight.T + att.k_proj.bias
    v = xkv @ att.v_proj.weight.T + att.v_proj.bias
    heads = []
    for h in range(H):
        s = q[:, h * D:(h + 1) * D] @ k[:, h * D:(h + 1) * D].T
        s = s.masked_fill(~key_ok[None, :], float("-inf"))
        heads.append(torch.softmax(s, -1) @ v[:, h * D:(h + 1) * D])
    a = torch.cat(heads, -1) @ att.out_proj.weight.T + att.out_proj.bias
    x = F.layer_norm(xq + a, (xq.size(-1),), layer.self_attn_layer_norm.weight, layer.self_attn_layer_norm.bias)
    f = F.gelu(x @ layer.fc1.weight.T + layer.fc1.bias) @ layer.fc2.weight.T + layer.fc2.bias
    return F.layer_norm(x + f, (x.size(-1),), layer.final_layer_norm.weight, layer.final_layer_norm.bias)


def _ref_token_drop(m, src, keep, d, end):
    """Slow reference: loop over sequences and layers, explicit gather/merge by Python indexing."""
    enc = m.encoder.sentence_encoder
    L = len(enc.layers)
    feats, locs = [], []
    for b in range(src.size(0)):
        toks = src[b]
        ok = toks.ne(1)
        pos = torch.tensor([2 + i if ok[i] else 1 for i in range(len(toks))])
        for i in range(len(toks)):
            if ok[i]:
                pos[i] = 1 + int(ok[: i + 1].sum())
        x = enc.embed_tokens.weight[toks] + enc.embed_positions.weight[pos]
        x = enc.layernorm_embedding(x) * ok[:, None].float()
        kidx = [int(i) for i in keep[b]]
        for i in range(d):
            x = _ref_layer(enc.layers[i], x, x, ok)
        before = x
        h = _ref_layer(enc.layers[d], x[kidx], x, ok)
        if d == L - 2:
            locs.append(h[0])
        for i in range(d + 1, end + 1):
            h = _ref_layer(enc.layers[i], h, h, ok[kidx])
            if i == L - 2:
                locs.append(h[0])
        x = before.clone()
        for j, t in enumerate(kidx):
            x[t] = h[j]
        for i in range(end + 1, L):
            x = _ref_layer(enc.layers[i], x, x, ok)
            if i == L - 2:
                locs.append(x[0])
        feats.append(x)
    return torch.stack(feats), torch.stack(locs)


@pytest.mark.parametrize("layers,split", [(4, None), (6, None), (6, (1, 3)), (6, (0, 2))])
def test_token_drop_matches_slow_reference(layers, split):
    m = tiny(layers=layers, token_drop_layers=split)
    src = batch()
    keep = torch.tensor([[0, 2, 3, 7, 8, 11], [0, 1, 4, 5, 6, 8], [0, 1, 2, 3, 4, 9]])  # row 2 keeps a pad
    L = layers
    d, end = split if split else (L // 2 - 1, L - 2)
    with torch.no_grad():
        feats, extra = m(src, features_only=True, token_drop_keep=keep, return_all_hiddens=True)
        ref, ref_local = _ref_token_drop(m, src, keep, d, end)
    torch.testing.assert_close(feats, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(extra["cls_local"], ref_local, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(extra["cls_global"], ref[:, 0], rtol=1e-5, atol=1e-5)
    assert len(extra["inner_states"]) == L + 1 and extra["inner_states"][-1].shape == (12, 3, 16)


def test_token_drop_keep_all_equals_full_model():
    for layers in (4, 6):
        m = tiny(layers=layers)
        src = batch()
        keep = torch.arange(src.size(1)).expand(src.size(0), -1)
        masked = src.ne(1) & (torch.arange(12) % 3 == 1)
        with torch.no_grad():
            full, ef = m(src, masked_tokens=masked)
            drop, ed = m(src, masked_tokens=masked, token_drop_keep=keep)
        torch.testing.assert_close(drop, full, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ed["cls_local"], ef["cls_local"], rtol=1e-5, atol=1e-5)


def test_token_drop_backward_reaches_all_layers():
    m = tiny(layers=4).train()
    src = batch()
    keep = torch.tensor([[0, 2, 3, 7], [0, 1, 4, 5], [0, 1, 2, 3]])
    out, extra = m(src, token_drop_keep=keep, masked_tokens=src.ne(1))
    (out.logsumexp(-1).sum() + extra["cls_local"].sum()).backward()
    for i in range(4):
        assert m.encoder.sentence_encoder.layers[i].fc1.weight.grad.abs().sum() > 0


def test_token_drop_needs_four_layers():
    m = tiny(layers=3)
    with pytest.raises(ValueError, match="at least 4"):
        m(batch(), token_drop_keep=torch.zeros(3, 2, dtype=torch.long))
    m = tiny(layers=4)
    with pytest.raises(ValueError, match="position 0"):
        m(batch(), token_drop_keep=torch.tensor([[1, 2]] * 3))


# ---------------------------------------------------------------- cheap dropout
def test_drop_threshold_is_exact_and_rate_is_right():
    thr, scale = drop_threshold(0.1)
    assert thr == 6554 - 32768 and scale == 1.0 / (1.0 - 6554 / 65536)
    torch.manual_seed(3)
    keep, _ = drop_mask((1000, 1000), 0.1, "cpu")
    assert abs(1 - keep.float().mean().item() - 6554 / 65536) < 0.0015   # ~5 sigma
    x = torch.ones(1000, 1000)
    assert abs(cheap_dropout(x, 0.1, True).mean().item() - 1.0) < 0.002
    assert cheap_dropout(x, 0.1, False) is x and cheap_dropout(x, 0.0, True) is x
    torch.manual_seed(5)
    a = cheap_dropout(x, 0.3, True)
    torch.manual_seed(5)
    assert torch.equal(a, cheap_dropout(x, 0.3, True))  # reproducible from torch's RNG state


def test_attention_dropout_matches_explicit_masked_attention():
    """Training-mode attention with dropout equals softmax -> (same mask) -> matmul done by hand."""
    m = tiny(layers=2)
    att = m.encoder.sentence_encoder.layers[0].self_attn
    att.dropout = 0.25
    att.train()
    x = torch.randn(2, 7, 16)
    mask = torch.ones(2, 1, 1, 7, dtype=torch.bool)
    mask[1, ..., 5:] = False
    torch.manual_seed(11)
    out = att(x, x, mask)
    torch.manual_seed(11)
    keep, scale = drop_mask((2, 2, 7, 7), 0.25, "cpu")
    q = (x @ att.q_proj.weight.T + att.q_proj.bias).view(2, 7, 2, 8).transpose(1, 2)
    k = (x @ att.k_proj.weight.T + att.k_proj.bias).view(2, 7, 2, 8).transpose(1, 2)
    v = (x @ att.v_proj.weight.T + att.v_proj.bias).view(2, 7, 2, 8).transpose(1, 2)
    p = torch.softmax((q @ k.transpose(-1, -2) / math.sqrt(8)).masked_fill(~mask, float("-inf")), -1)
    o = ((p * keep * scale) @ v).transpose(1, 2).reshape(2, 7, 16)
    torch.testing.assert_close(out, att.out_proj(o), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(37, 24), (3, 5, 24)])
def test_vocab_logits_padded_rows_gemm_equals_plain_linear(shape):
    """The LM head's output GEMM written into 16-float-aligned rows (fairseq.models.roberta.model.vocab_logits)
    gives plain linear's logits and gradients, for masked rows [N,C] and whole batches [B,T,C]; the tied
    weight's gradient is accumulated as usual."""
    torch.manual_seed(0)
    x = torch.randn(*shape, requires_grad=True)
    w = torch.randn(7713, 24, requires_grad=True)  # an odd vocabulary, like the fixture's with <mask>
    b = torch.randn(7713, requires_grad=True)
    y = vocab_logits(x, w, b)
    g = torch.randn_like(y)
    (y * g).sum().backward()
    got = [y.detach(), x.grad, w.grad, b.grad]
    assert y.is_contiguous() and y.shape == (*shape[:-1], 7713)
    x.grad = w.grad = b.grad = None
    y = F.linear(x, w) + b
    (y * g).sum().backward()
    for a, e in zip(got, [y.detach(), x.grad, w.grad, b.grad]):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-5)


def test_dropout_add_is_residual_plus_cheap_dropout_bit_for_bit():
    """The encoder layer's one-pass residual + dropout (addcmul) draws the same mask from the same RNG state
    and gives the same bits as residual + cheap_dropout(x)."""
    g = torch.Generator().manual_seed(0)
    residual, x = torch.randn(4, 33, 24, generator=g), torch.randn(4, 33, 24, generator=g)
    torch.manual_seed(7)
    fused = dropout_add(residual, x, 0.1, True)
    torch.manual_seed(7)
    plain = residual + cheap_dropout(x, 0.1, True)
    assert torch.equal(fused, plain) and not torch.equal(fused, residual + x)
    assert torch.equal(dropout_add(residual, x, 0.1, False), residual + x)
