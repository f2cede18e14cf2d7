"""What the hash tie-break costs in kept-position selection (fairseq/token_drop.py).

Times select_kept_positions with ties to the earlier position (the old rule) against the hash
keys (tie_break_keys + one more stable sort), interleaved in one process, and sets both against one
token-dropping training step of a 12-layer, 256-wide RoBERTa on the same batch. Prints medians and ratios.

    python benchmarks/bench_selection.py [--threads 1] [--reps 30]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from fairseq.token_drop import keep_count, select_kept_positions, tie_break_keys

PAD, MASK, VOCAB = 1, 7712, 7713


def batch(B, T, g):
    src = torch.randint(4, MASK, (B, T), generator=g)
    src[:, 0] = 0
    return src


def time_it(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=30)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(0)
    scores = 5 + 5 * torch.rand(VOCAB, generator=g)
    forced = [0, 2, 3, MASK]
    for B, T in ((4, 512), (8, 512), (32, 128)):
        src, ids = batch(B, T, g), torch.arange(B)
        K = keep_count(T, 0.5)
        old, new = [], []
        for r in range(a.reps):  # interleaved
            old.append(time_it(lambda: select_kept_positions(src, scores, K, PAD, forced)))
            new.append(time_it(lambda: select_kept_positions(src, scores, K, PAD, forced,
                                                             tie_break=tie_break_keys(ids, T, 1, r))))
        mo, mn = statistics.median(old), statistics.median(new)
        print(f"B={B:3d} T={T}: earlier-position ties {mo * 1e3:.3f} ms, hash ties {mn * 1e3:.3f} ms, "
              f"ratio {mn / mo:.2f}, extra {1e3 * (mn - mo):.3f} ms per micro-batch")
    step_s = step_time(a.threads)
    print(f"one token-dropping step, 12 layers x 256 wide, batch 4 x 512: {step_s * 1e3:.0f} ms (median of 3)")


def step_time(threads):
    """Median forward+backward of one dropping step, for scale."""
    from fairseq.data.dictionary import placeholder_dictionary
    from fairseq.models import build_model

    margs = argparse.Namespace(arch="roberta", encoder_layers=12, encoder_embed_dim=256, encoder_ffn_embed_dim=1024,
                               encoder_attention_heads=4, max_positions=512, dropout=0.0, attention_dropout=0.0)
    model = build_model(margs, placeholder_dictionary(VOCAB)).train()
    g = torch.Generator().manual_seed(1)
    src = batch(4, 512, g)
    masked = torch.rand(4, 512, generator=g) < 0.15
    keep = select_kept_positions(src, 5 + 5 * torch.rand(VOCAB, generator=g), 256, PAD, [0, 2, 3, MASK])
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        logits, _ = model(src, masked_tokens=masked, token_drop_keep=keep)
        logits.float().logsumexp(-1).sum().backward()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


if __name__ == "__main__":
    main()
