"""Self-attention forward + backward alone: ours (with attention dropout) vs the same maths without dropout
vs torch's fused scaled_dot_product_attention without dropout, beside the matmul-only ideal.

Why: on C2 (12 x 256, T = 512) attention is about a third of an update and runs far below the matmul peak,
which decides how close a whole update can get to the peak (docs/results.md "Training speed vs fairseq 0.12.2").
The two dropout-free lines bound what any change to our dropout could buy: torch's fused kernel is the
fastest attention torch offers on CPU, and it cannot drop attention probabilities (with dropout_p > 0 it
falls back to the unfused maths).

    python benchmarks/bench_attention.py                          # C2's shape, 1 thread, CPU time
    python benchmarks/bench_attention.py --seq 128 --head-dim 32 --batch 8   # C1's

Each round runs the three variants once each, interleaved; medians over --repeats rounds after --warmup.
The ideal is the six batched matmuls' FLOPs (2 forward, 4 backward; 2 * B * H * T * T * D each) at this
CPU's fp32 matmul peak (bench_vs_hf.matmul_peak_flops, same threads and clock).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from bench_vs_hf import matmul_peak_flops, timed
from fairseq.cpu_memory import keep_freed_memory
from fairseq.modules.transformer_layer import MultiheadSelfAttention


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--dropout", type=float, default=0.1, help="ours' attention dropout")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    keep_freed_memory()  # as fairseq-train does
    clock = time.process_time
    b, h, t, d = a.batch, a.heads, a.seq, a.head_dim
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(b, h, t, d, generator=g).requires_grad_() for _ in range(3))
    grad = torch.randn(b, h, t, d, generator=g)
    attn = MultiheadSelfAttention(h * d, h, a.dropout).train()

    def ours():
        attn._attention_with_dropout(q, k, v, None, a.dropout).backward(grad)

    def unfused_no_dropout():
        scores = torch.matmul(q * d ** -0.5, k.transpose(-1, -2))
        torch.matmul(torch.softmax(scores, -1), v).backward(grad)

    def fused_no_dropout():
        F.scaled_dot_product_attention(q, k, v).backward(grad)

    variants = {f"ours, attention dropout {a.dropout}": ours, "same maths, no dropout": unfused_no_dropout,
                "torch fused SDPA, no dropout": fused_no_dropout}
    times = {name: [] for name in variants}
    for r in range(a.warmup + a.repeats):
        for name, fn in variants.items():
            seconds = timed(fn, clock)
            if r >= a.warmup:
                times[name].append(seconds)
    flops = 6 * 2 * b * h * t * t * d
    peak = matmul_peak_flops(clock=clock)
    ideal = flops / peak
    print(f"attention forward + backward, B={b} H={h} T={t} D={d}, {a.threads} thread(s), CPU time, medians of "
          f"{a.repeats}; matmul FLOPs {flops / 1e9:.2f} G, peak {peak / 1e9:.1f} GFLOP/s -> ideal {ideal * 1e3:.1f} ms")
    for name, ts in times.items():
        ms = statistics.median(ts)
        print(f"  {name:36s} {ms * 1e3:7.1f} ms   {ideal / ms:5.0%} of the matmul peak")


if __name__ == "__main__":
    main()
