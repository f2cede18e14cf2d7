"""Training throughput of our RobertaModel vs transformers.RobertaForMaskedLM, side by side in one process.

One step = forward + backward + AdamW step on an MLM batch (15% of positions masked, dropout 0.1 and
attention dropout 0.1, as in RoBERTa pretraining), identical shapes and optimizer for both models.
HF uses attn_implementation="eager" (its fastest on this CPU, SPEC section 5). Steps of the two models are
interleaved so machine noise hits both alike; we report the median of --repeats timed steps.

    python benchmarks/bench_vs_hf.py                 # C1, C2, C2-bf16; 2 threads; medians of 3
    python benchmarks/bench_vs_hf.py --configs C1 --repeats 1 --warmup 1   # smoke run
    python benchmarks/bench_vs_hf.py --threads 1 --clock process   # CPU-time proxy on a busy machine
    python benchmarks/bench_vs_hf.py --configs C1 C2 QS --compile   # + ours with --compile, same weights

Every line also gives ours' model-FLOP rate (fairseq.flops.roberta_train_flops: encoder + LM head on the
masked rows, 6 FLOPs per multiply-add) as a fraction of this CPU's fp32 matmul peak, measured in the same
process with the same threads and clock: the best of five 2048 x 2048 x 2048 torch.mm calls.

Configs (vocabulary 7,713): C1 = 4 layers, 128 wide, FFN 512, 4 heads, batch 8 x 128;
C2 = 12 layers, 256 wide, FFN 1024, 4 heads, batch 4 x 512 (fp32, and bf16 autocast as C2-bf16);
QS = the quickstart model, 12 layers, 128 wide, FFN 512, 4 heads, batch 16 x 128.

With --compile a third model, ours with fairseq.compile.compile_model (what --compile does) and the same
initial weights, joins the interleaved rounds; its first step's wall time (compilation included) is
printed as "compile s" (cold only with an empty inductor cache: TORCHINDUCTOR_CACHE_DIR=$(mktemp -d)).
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
    "QS": dict(layers=12, dim=128, ffn=512, heads=4, batch=16, seq=128, bf16=False),
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


def matmul_peak_flops(n: int = 2048, tries: int = 5, clock=None) -> float:
    """fp32 FLOP/s of the best of `tries` n x n x n matmuls (what MKL/oneDNN reach on this CPU and threads),
    on `clock` (default: this benchmark's --clock; bench_vs_fairseq passes time.process_time)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # first call: allocation and library warm-up
    return max(2.0 * n ** 3 / timed(lambda: torch.mm(a, b), clock) for _ in range(tries))


CLOCK = {"wall": time.perf_counter, "process": time.process_time}
_clock = time.perf_counter


def timed(fn, clock=None):
    """Seconds of one call of fn on `clock` (default: this benchmark's --clock)."""
    clock = clock or _clock
    t = clock()
    fn()
    return clock() - t


def run_config(name, c, repeats, warmup, compiled=False, peak=None):
    torch.manual_seed(0)
    ours, hf = build_ours(c), build_hf(c)
    models = {"ours": (ours, step_ours), "HF": (hf, step_hf)}
    compile_s = None
    if compiled:
        from fairseq.compile import compile_model
        comp = build_ours(c)
        comp.load_state_dict(ours.state_dict())
        compile_model(comp)
        models["compiled"] = (comp, step_ours)
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-4) for k, (m, _) in models.items()}
    for m, _ in models.values():
        m.train()
    batch = make_batch(c)
    if c["bf16"]:
        def ctx():
            return torch.autocast("cpu", dtype=torch.bfloat16)
    else:
        ctx = contextlib.nullcontext
    if compiled:  # wall clock: inductor compiles in worker processes
        t0 = time.perf_counter()
        step_ours(models["compiled"][0], opts["compiled"], batch, ctx)
        compile_s = time.perf_counter() - t0
    for _ in range(warmup):
        for k, (m, fn) in models.items():
            fn(m, opts[k], batch, ctx)
    times = {k: [] for k in models}
    for _ in range(repeats):
        for k, (m, fn) in models.items():
            times[k].append(timed(lambda: fn(m, opts[k], batch, ctx)))
    ntok = c["batch"] * c["seq"]
    tps = {k: ntok / statistics.median(v) for k, v in times.items()}
    line = f"{name:8s} ours {tps['ours']:9.0f} tok/s   HF {tps['HF']:9.0f} tok/s   ratio {tps['ours'] / tps['HF']:5.2f}x"
    if compiled:
        line += (f"   compiled {tps['compiled']:9.0f} tok/s ({tps['compiled'] / tps['ours']:4.2f}x eager, "
                 f"{tps['compiled'] / tps['HF']:4.2f}x HF; compile s {compile_s:.1f})")
    if peak and not c["bf16"]:
        from fairseq.flops import roberta_train_flops
        masked_rows = float(batch[2].sum()) / c["batch"]
        flops = roberta_train_flops(c["layers"], c["seq"], c["dim"], c["ffn"], VOCAB, masked_rows, c["batch"])
        line += f"   ours {flops * tps['ours'] / ntok / 1e9:.1f} GFLOP/s = {flops * tps['ours'] / ntok / peak:.0%} of peak"
    steps = ", ".join(f"{k} {[round(x * 1e3) for x in v]}" for k, v in times.items())
    print(line + f"   (step ms {steps})", flush=True)
    return tps['ours'] / tps['HF']


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--clock", choices=list(CLOCK), default="wall",
                   help="wall (the target) or process CPU time, a proxy that is less sensitive to other "
                        "processes competing for the cores (use with --threads 1)")
    p.add_argument("--compile", action="store_true", help="also time ours with --compile (same weights)")
    a = p.parse_args(argv)
    global _clock
    _clock = CLOCK[a.clock]
    torch.set_num_threads(a.threads)
    peak = matmul_peak_flops()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {a.clock} clock, medians of {a.repeats}; "
          f"fp32 matmul peak {peak / 1e9:.1f} GFLOP/s (2048^3 torch.mm, best of 5)")
    for name in a.configs:
        run_config(name, CONFIGS[name], a.repeats, a.warmup, a.compile, peak)


if __name__ == "__main__":
    main()
