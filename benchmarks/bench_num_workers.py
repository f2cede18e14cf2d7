"""--num-workers 0 vs N: how much batch building the training loop waits for, and the time per update.

With 0 workers every batch is masked and collated in the main process between updates; with N > 0
DataLoader workers build the next batches while the model computes, so the loop should wait only
for what the workers could not hide. Real masked_lm task, model, criterion and Trainer on the
fixture's data-bin; the two settings alternate round by round in one process (this machine is
shared and noisy), each round a fresh epoch of --updates updates. Prints medians and ratios.

    python benchmarks/bench_num_workers.py --workers 2 --rounds 3 --updates 30
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from fairseq import options, tasks
from fairseq.trainer import Trainer

SHARED = Path(os.environ.get("FAIRSEQ_SCTD_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def build(a):
    argv = [str(a.data), "-a", "roberta_base", "--encoder-layers", str(a.layers), "--encoder-embed-dim", str(a.dim),
            "--encoder-ffn-embed-dim", str(4 * a.dim), "--encoder-attention-heads", "4",
            "--tokens-per-sample", str(a.tokens_per_sample), "--sample-break-mode", "none",
            "--batch-size", str(a.batch_size), "--criterion", "masked_lm", "--optimizer", "adam", "--cpu", "--lr", "1e-4",
            "--no-save", "--log-format", "none"]
    args = options.parse_args_and_arch(options.get_training_parser(), argv)
    task = tasks.setup_task(args)
    task.load_dataset("train")
    model = task.build_model(args)
    return args, task, Trainer(args, task, model, task.build_criterion(args))


def one_round(a, task, trainer, workers: int, epoch: int):
    """(startup s, median wait per update s, median update s) over a.updates updates."""
    itr = task.get_batch_iterator(task.dataset("train"), max_sentences=a.batch_size, max_positions=a.tokens_per_sample,
                                  ignore_invalid_inputs=True, seed=1, epoch=epoch,
                                  num_workers=workers).next_epoch_itr(shuffle=True)
    t = time.perf_counter()
    batch = next(itr)  # the first batch includes starting the workers
    startup = time.perf_counter() - t
    waits, steps = [], []
    for _ in range(a.updates):
        t0 = time.perf_counter()
        trainer.train_step([batch])
        t1 = time.perf_counter()
        batch = next(itr)
        t2 = time.perf_counter()
        waits.append(t2 - t1)
        steps.append(t2 - t0)
    del itr  # stops the workers
    return startup, statistics.median(waits), statistics.median(steps)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=SHARED / "fixtures" / "fairseq-peer" / "data-bin")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--updates", type=int, default=30)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--tokens-per-sample", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=1, help="torch threads of the main process")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    args, task, trainer = build(a)
    results = {0: [], a.workers: []}
    for r in range(a.rounds):
        for workers in (0, a.workers):
            results[workers].append(one_round(a, task, trainer, workers, epoch=r + 1))
    print(f"{a.layers} layers, {a.dim} wide, batch {a.batch_size} x {a.tokens_per_sample}, {a.updates} updates "
          f"per round, {a.rounds} rounds, {a.threads} torch thread(s), {os.cpu_count()} CPUs")
    print(f"{'--num-workers':>14} {'startup s':>10} {'wait/update ms':>15} {'update ms':>10} {'wait share':>11}")
    med = {}
    for workers, rows in results.items():
        startup = statistics.median(r[0] for r in rows)
        wait = statistics.median(r[1] for r in rows)
        step = statistics.median(r[2] for r in rows)
        med[workers] = (wait, step)
        print(f"{workers:>14} {startup:>10.3f} {1e3 * wait:>15.2f} {1e3 * step:>10.1f} {wait / step:>10.1%}")
    (w0, s0), (wn, sn) = med[0], med[a.workers]
    print(f"ratio {a.workers} workers / 0: wait {wn / w0:.3f}, time per update {sn / s0:.3f}")


if __name__ == "__main__":
    main()
