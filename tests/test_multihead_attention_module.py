"""fairseq.modules.multihead_attention.MultiheadAttention: equal to torch's multi_head_attention_forward (what
fairseq 0.12.2 runs in eager mode) across masks, bias_k/v and add_zero_attn; TorchScript gives the same
numbers; step-by-step decoding with the incremental state equals one causal pass."""
import pytest
import torch
import torch.nn.functional as F

from fairseq.modules.multihead_attention import MultiheadAttention


def _torch_reference(m, q, k, v, key_padding_mask, attn_mask):
    return F.multi_head_attention_forward(
        q, k, v, m.embed_dim, m.num_heads, torch.empty([0]), torch.cat((m.q_proj.bias, m.k_proj.bias, m.v_proj.bias)),
        m.bias_k, m.bias_v, m.add_zero_attn, 0.0, m.out_proj.weight, m.out_proj.bias, False, key_padding_mask, True,
        attn_mask, use_separate_proj_weight=True, q_proj_weight=m.q_proj.weight, k_proj_weight=m.k_proj.weight,
        v_proj_weight=m.v_proj.weight)


@pytest.mark.parametrize("bias_kv", [False, True])
@pytest.mark.parametrize("zero_attn", [False, True])
@pytest.mark.parametrize("masks", ["none", "padding", "causal", "both"])
def test_equals_torch_multi_head_attention(bias_kv, zero_attn, masks):
    torch.manual_seed(0)
    m = MultiheadAttention(16, 4, add_bias_kv=bias_kv, add_zero_attn=zero_attn).eval()
    q, k = torch.randn(5, 3, 16), torch.randn(7, 3, 16)
    kpm = torch.zeros(3, 7, dtype=torch.bool)
    kpm[1, 5:] = True
    am = torch.triu(torch.full((5, 7), float("-inf")), 3)
    kpm, am = (kpm if masks in ("padding", "both") else None), (am if masks in ("causal", "both") else None)
    out, weights = m(q, k, k, key_padding_mask=kpm, attn_mask=am)
    ref, ref_weights = _torch_reference(m, q, k, k, kpm, am)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(weights, ref_weights, rtol=0, atol=1e-6)
    scripted = torch.jit.script(m)
    torch.testing.assert_close(scripted(q, k, k, key_padding_mask=kpm, attn_mask=am)[0], out, rtol=0, atol=1e-6)


def test_incremental_decoding_equals_one_causal_pass():
    torch.manual_seed(0)
    m = MultiheadAttention(16, 2, self_attention=True).eval()
    x = torch.randn(6, 2, 16)
    full, _ = m(x, x, x, attn_mask=torch.triu(torch.full((6, 6), float("-inf")), 1))
    state = {}
    steps = [m(x[t:t + 1], x[t:t + 1], x[t:t + 1], incremental_state=state)[0] for t in range(6)]
    torch.testing.assert_close(torch.cat(steps), full, rtol=0, atol=1e-6)


def test_pruned_heads_keep_the_largest_and_still_run():
    torch.manual_seed(0)
    m = MultiheadAttention(16, 4).eval()
    with torch.no_grad():
        m.q_proj.weight[4:8] *= 10  # head 1 is the largest
    keep = m._get_reserve_head_index(num_heads_to_keep=2)
    assert keep[0] == (4, 8)
    m._adaptive_prune_heads(keep)
    m._set_skip_embed_dim_check()
    x = torch.randn(3, 2, 16)
    assert m(x, x, x)[0].shape == (3, 2, 16) and m.num_heads == 2 and m.q_proj.weight.shape == (8, 16)
