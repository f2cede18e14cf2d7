"""Data-pipeline throughput: block building (Cython vs numpy fallback) and BPE + binarization.

    python benchmarks/bench_data.py                       # 1e9 synthetic tokens + a 10 MB Gutenberg subset
    python benchmarks/bench_data.py --tokens 1e8 --gutenberg-mb 2   # quick smoke run

Prints tokens/s and ratios. Timings are wall-clock on a shared machine: treat them as rough.
"""
from __future__ import annotations

import argparse
import glob
import os
import resource
import shutil
import tempfile
import time

import numpy as np

from fairseq.data.indexed_dataset import MMapIndexedDataset
from fairseq.data.token_blocks import build_blocks, has_fast_path


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic_sizes(total_tokens: int, seed: int = 0) -> np.ndarray:
    """Sentence lengths 1..63 (mean 32) plus ~3% empty-line separators, summing to ~total_tokens."""
    rng = np.random.RandomState(seed)
    n = int(total_tokens / 31.0)
    sizes = rng.randint(1, 64, size=n).astype(np.int32)
    sizes[rng.rand(n) < 0.03] = 1
    return sizes


def time_blocks(sizes, mode, use_fast, block_size=511):
    t0 = time.perf_counter()
    sl, b2d = build_blocks(sizes, block_size, mode, use_fast=use_fast)
    dt = time.perf_counter() - t0
    return dt, len(sl), sl


def bench_blocks(sizes, label, fallback_sizes=None):
    ntok = int(sizes.sum(dtype=np.int64))
    print(f"\n== block building on {label}: {ntok:,} tokens, {len(sizes):,} sentences, block 511 ==")
    for mode in ("complete", "complete_doc", "none"):  # eos is a plain cumsum, no fast path needed
        if has_fast_path():
            dt, nb, sl = time_blocks(sizes, mode, True)
            print(f"  {mode:13s} cython   {dt:8.2f} s  {ntok / dt / 1e6:9.1f} M tok/s  {nb:,} blocks  "
                  f"peak RSS {peak_rss_mb():.0f} MB")
        fs = sizes if fallback_sizes is None else fallback_sizes
        fntok = int(fs.sum(dtype=np.int64))
        dt2, nb2, sl2 = time_blocks(fs, mode, False)
        note = "" if fallback_sizes is None else f" (on a {fntok:,}-token prefix)"
        line = f"  {mode:13s} fallback {dt2:8.2f} s  {fntok / dt2 / 1e6:9.1f} M tok/s{note}"
        if has_fast_path():
            line += f"  cython/fallback speed ratio {(ntok / dt) / (fntok / dt2):.1f}x"
            if fallback_sizes is None:
                assert np.array_equal(sl, sl2)
        print(line)


def bench_gutenberg(mb: float, workers: int, vocab: int):
    shared = os.environ.get("FAIRSEQ_SCTD_SHARED") or os.path.join(os.path.dirname(__file__), "..", "..", "shared")
    books = sorted(glob.glob(os.path.join(shared, "data", "gutenberg_rcdm", "books", "*.txt")))
    if not books:
        print(f"gutenberg_rcdm not found under {shared} (set FAIRSEQ_SCTD_SHARED); skipping")
        return None
    tmp = tempfile.mkdtemp(prefix="bench_data_")
    raw = os.path.join(tmp, "train.txt")
    limit = int(mb * 1e6)
    with open(raw, "w", encoding="utf-8") as out:
        written = 0
        for b in books:
            with open(b, encoding="utf-8") as f:
                text = f.read()
            out.write(text if text.endswith("\n") else text + "\n")
            out.write("\n")
            written += len(text)
            if written >= limit:
                break
    nbytes = os.path.getsize(raw)
    print(f"\n== Gutenberg subset: {nbytes / 1e6:.1f} MB raw text, workers {workers} ==")
    from fairseq_cli import bpe as bpe_cli
    from fairseq_cli import preprocess as pre_cli

    def timed(fn, argv, parser):
        t0 = time.perf_counter()
        fn(parser().parse_args(argv))
        return time.perf_counter() - t0

    t_train = timed(bpe_cli.train_main, ["train", "--inputs", raw, "--vocab-size", str(vocab), "--min-frequency",
                                         "2", "--output-dir", os.path.join(tmp, "bpe")], bpe_cli.get_parser)
    bpe_out = os.path.join(tmp, "train.bpe")
    t_enc = timed(bpe_cli.encode_main, ["encode", "--encoder-json", os.path.join(tmp, "bpe", "encoder.json"),
                                        "--vocab-bpe", os.path.join(tmp, "bpe", "vocab.bpe"), "--inputs", raw,
                                        "--outputs", bpe_out, "--keep-empty", "--workers", str(workers)],
                  bpe_cli.get_parser)
    t_pre = timed(pre_cli.main, ["--only-source", "--trainpref", bpe_out, "--destdir", os.path.join(tmp, "bin"),
                                 "--workers", str(workers)], pre_cli.get_parser)
    ds = MMapIndexedDataset(os.path.join(tmp, "bin", "train"))
    ntok = int(ds.sizes.sum(dtype=np.int64))
    print(f"  BPE train (vocab {vocab}) {t_train:7.2f} s  {nbytes / t_train / 1e6:6.2f} MB/s")
    print(f"  BPE encode           {t_enc:7.2f} s  {ntok / t_enc / 1e3:8.1f} k tok/s")
    print(f"  binarize (preprocess){t_pre:7.2f} s  {ntok / t_pre / 1e3:8.1f} k tok/s  ({ntok:,} tokens, "
          f"{len(ds):,} lines; dictionary pass + binarize pass)")
    sizes = np.array(ds.sizes)
    del ds
    shutil.rmtree(tmp, ignore_errors=True)
    return sizes


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--tokens", type=float, default=1e9)
    p.add_argument("--fallback-tokens", type=float, default=1e8,
                   help="the numpy fallback runs on a prefix this long (it is much slower)")
    p.add_argument("--gutenberg-mb", type=float, default=10)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--vocab-size", type=int, default=8000)
    args = p.parse_args()
    print(f"Cython fast path available: {has_fast_path()}")
    sizes = synthetic_sizes(int(args.tokens))
    prefix = sizes[: int(args.fallback_tokens / 31.0)] if args.fallback_tokens < args.tokens else None
    bench_blocks(sizes, "synthetic sizes", prefix)
    del sizes, prefix
    if args.gutenberg_mb > 0:
        g = bench_gutenberg(args.gutenberg_mb, args.workers, args.vocab_size)
        if g is not None:
            bench_blocks(np.asarray(g), "Gutenberg sizes")
    print(f"\npeak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
