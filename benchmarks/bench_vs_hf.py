"""Training throughput of our RobertaModel vs transformers.RobertaForMaskedLM, side by side in one process.

One step = forward + backward + AdamW step on an MLM batch (15% of positions masked, dropout 0.1 and
attention dropout 0.1, as in RoBERTa pretraining), identical shapes and optimizer for both models.
HF uses attn_implementation="eager" (its fastest on this CPU, SPEC section 5). Steps of the two models are
interleaved so machine noise hits both alike; we report the median of --repeats timed steps.

    python benchmarks/bench_vs_hf.py                 # C1, C2, C2-bf16; 2 threads; medians of 3
    python benchmarks/bench_vs_hf.py --configs C1 --repeats 1 --warmup 1   # smoke run
    python benchmarks/bench_vs_hf.py --threads 1 --clock process   # CPU-time proxy on a busy machine

Configs (vocabulary 7,713): C1 = 4 layers, 128 wide, FFN 512, 4 heads, batch 8 x 128;
C2 = 12 layers, 256 wide, FFN 1024, 4 heads, batch 4 x 512 (fp32, and bf16 autocast as C2-bf16).
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch
import torch.nn.functional as F

VOCAB = 7713
CONFIGS = {
    "C1": dict(layers=4, dim=128, ffn=512, heads=4, batch=8, seq=128, bf16=False),
    "C2": dict(layers=12, dim=256, ffn=1024, heads=4, batch=4, seq=512, bf16=False),
    "C2-bf16": dict(layers=12, dim=256, ffn=1024, heads=4, batch=4, seq=512, bf16=True),
}


def build_ours(c):
    from fairseq.data.dictionary import placeholder_dictionary
    from fairseq.models.roberta import RobertaModel

    args = argparse.Namespace(arch="roberta_base", encoder_layers=c["layers"], encoder_embed_dim=c["dim"],
                              encoder_ffn_embed_dim=c["ffn"], encoder_attention_heads=c["heads"],
                              max_positions=c["seq"], dropout=0.1, attention_dropout=0.1)
    return RobertaModel.build_model(args, placeholder_dictionary(VOCAB))


def build_hf(c):
    from transformers import RobertaConfig, RobertaForMaskedLM
    cfg = RobertaConfig(vocab_size=VOCAB, hidden_size=c["dim"], num_hidden_layers=c["layers"],
                        num_attention_heads=c["heads"], intermediate_size=c["ffn"], hidden_act="gelu",
                        hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
                        max_position_embeddings=c["seq"] + 2, type_vocab_size=1, layer_norm_eps=1e-5,
                        pad_token_id=1, bos_token_id=0, eos_token_id=2)
    cfg._attn_implementation = "eager"
    return RobertaForMaskedLM(cfg)


def make_batch(c, seed=0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(4, VOCAB - 1, (c["batch"], c["seq"]), generator=g)
    tokens[:, 0] = 0
    masked = torch.rand(c["batch"], c["seq"], generator=g) < 0.15
    src = tokens.masked_fill(masked, VOCAB - 1)
    return src, tokens, masked


def step_ours(model, opt, batch, ctx):
    src, tokens, masked = batch
    with ctx():
        logits, _ = model(src, masked_tokens=masked)
        loss = F.cross_entropy(logits.float(), tokens[masked])
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def step_hf(model, opt, batch, ctx):
    src, tokens, masked = batch
    labels = tokens.masked_fill(~masked, -100)
    with ctx():
        loss = model(input_ids=src, labels=labels).loss
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


CLOCK = {"wall": time.perf_counter, "process": time.process_time}
_clock = time.perf_counter


def timed(fn):
    t = _clock()
    fn()
    return _clock() - t


def run_config(name, c, repeats, warmup):
    torch.manual_seed(0)
    ours, hf = build_ours(c), build_hf(c)
    ours.train()
    hf.train()
    o_opt = torch.optim.AdamW(ours.parameters(), lr=1e-4)
    h_opt = torch.optim.AdamW(hf.parameters(), lr=1e-4)
    batch = make_batch(c)
    if c["bf16"]:
        def ctx():
            return torch.autocast("cpu", dtype=torch.bfloat16)
    else:
        ctx = contextlib.nullcontext
    for _ in range(warmup):
        step_ours(ours, o_opt, batch, ctx)
        step_hf(hf, h_opt, batch, ctx)
    t_o, t_h = [], []
    for _ in range(repeats):
        t_o.append(timed(lambda: step_ours(ours, o_opt, batch, ctx)))
        t_h.append(timed(lambda: step_hf(hf, h_opt, batch, ctx)))
    ntok = c["batch"] * c["seq"]
    o, h = ntok / statistics.median(t_o), ntok / statistics.median(t_h)
    print(f"{name:8s} ours {o:9.0f} tok/s   HF {h:9.0f} tok/s   ratio {o / h:5.2f}x   "
          f"(step ms ours {[round(x * 1e3) for x in t_o]}, HF {[round(x * 1e3) for x in t_h]})", flush=True)
    return o / h


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--clock", choices=list(CLOCK), default="wall",
                   help="wall (the target) or process CPU time, a proxy that is less sensitive to other "
                        "processes competing for the cores (use with --threads 1)")
    a = p.parse_args(argv)
    global _clock
    _clock = CLOCK[a.clock]
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {a.clock} clock, medians of {a.repeats}")
    for name in a.configs:
        run_config(name, CONFIGS[name], a.repeats, a.warmup)


if __name__ == "__main__":
    main()
