"""Training speed of our fairseq-train vs the real fairseq 0.12.2, the same command line, in fresh processes.

Why: the goal is stated against fairseq itself (2.0x on C1, 1.6x on C2), and only the whole command counts:
data pipeline, masking, model, criterion, Adam, the trainer's bookkeeping and logging. bench_vs_hf.py times
models in one process; this runs both fairseq-train implementations end to end, as a user would.

How: every round runs, for ours and then for the reference, one process of N updates and one of n0 updates
(--updates N --short n0, ours and fairseq alternating), all with the same flags on the same data-bin, and
takes per-update time = (cost(N) - cost(n0)) / (N - n0). The subtraction removes start-up (imports, data
loading, model building, the first updates' warm-up) and the end of the run, which both processes share.
"cost" is CPU seconds (user + system, from resource.getrusage(RUSAGE_CHILDREN), so it includes the
DataLoader worker): on this shared 2-core machine a process's wall time depends on what else runs, its CPU
time much less (use --threads 1, the default; every process gets OMP_NUM_THREADS/MKL_NUM_THREADS = --threads).
The wall-clock figure from the same subtraction is printed beside it as the noisier second opinion.
Validation is off in both (--disable-validation), so nothing but training updates sits in the difference.
Ratio = fairseq s/update / ours s/update (> 1: ours is faster); medians over --rounds, and each round's value.

Roofline: for a config with one batch shape (C2, --sample-break-mode none) it also prints the model FLOPs of an
update (fairseq.flops.roberta_train_flops: encoder + LM head on the 15% masked rows), each implementation's
FLOP rate as a fraction of this CPU's fp32 matmul peak (the best of five 2048^3 torch.mm, same threads, CPU
time), and the fraction of peak that the goal's ratio would need: a goal above ~100% cannot be met by
making our code faster, only by making the reference slower.

    python benchmarks/bench_vs_fairseq.py --configs C1 C2 --rounds 3    # needs --fairseq-python (below)
    python benchmarks/bench_vs_fairseq.py --dry-run                     # ours only, 2 updates: a smoke test
    python benchmarks/bench_vs_fairseq.py --configs C1 --extra='--num-workers 0' --threads 2   # any flag, both

The reference: fairseq 0.12.2 in its own venv outside this repository (default /root/fairseq-ref; it needs
small local fixes to import on Python 3.11 / numpy 2, see ../shared/fixtures/fairseq-peer/README.md). Built on
2026-12-04 as: venv with torch==2.13.0, numpy, cython, hydra-core==1.0.7, omegaconf==2.0.6, bitarray, sacrebleu,
regex, tqdm, cffi; the sdist installed with --no-build-isolation --no-deps after making setup.py skip the torch
C++ extensions (the sdist lacks libbase's sources; masked_lm does not use them); then, in site-packages,
`X = X()` dataclass defaults -> field(default_factory=X) in fairseq/dataclass/configs.py,
fairseq/models/transformer/transformer_config.py and hydra/conf/__init__.py, hydra_init() in
fairseq/dataclass/initialize.py calling a field's default_factory, np.int -> int, np.float -> float. Its
`python -m fairseq_cli.train` runs from a scratch directory with PYTHONPATH unset, so it cannot import ours;
the version and path each interpreter imports are printed first.

Configs (masked_lm, roberta_base with dropout 0.1 and attention dropout 0.1, Adam betas (0.9,0.98), lr 5e-4,
polynomial_decay with 10 warm-up updates, --cpu, --no-save, --log-format json, seed 1):
C1 = 4 layers, 128 wide, FFN 512, 4 heads, --tokens-per-sample 128 --batch-size 8, --sample-break-mode
     complete (the fixture's reference command; blocks average ~107 tokens, padded per batch);
C2 = 12 layers, 256 wide, FFN 1024, 4 heads, --tokens-per-sample 512 --batch-size 4, --sample-break-mode none
     (every batch exactly 4 x 512; with complete the fixture's paragraphs pack to ~453 tokens per row).
"""
from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from fairseq import options, tasks
from fairseq.flops import roberta_train_flops
from fairseq.trainer import train_batch_iterator

from bench_vs_hf import matmul_peak_flops  # the same peak measurement, on CPU time here

SHARED = Path(os.environ.get("FAIRSEQ_SCTD_SHARED", Path(__file__).resolve().parents[2] / "shared"))
DATA = SHARED / "fixtures" / "fairseq-peer" / "data-bin"
GOALS = {"C1": 2.0, "C2": 1.6}  # the targets, fairseq s/update / ours

CONFIGS = {  # name: (model and batch flags, sample break mode, default N, default n0)
    "C1": (["--encoder-layers", "4", "--encoder-embed-dim", "128", "--encoder-ffn-embed-dim", "512",
            "--encoder-attention-heads", "4", "--tokens-per-sample", "128", "--batch-size", "8"], "complete", 200, 5),
    "C2": (["--encoder-layers", "12", "--encoder-embed-dim", "256", "--encoder-ffn-embed-dim", "1024",
            "--encoder-attention-heads", "4", "--tokens-per-sample", "512", "--batch-size", "4"], "none", 30, 3),
}
COMMON = ["--task", "masked_lm", "--arch", "roberta_base", "--criterion", "masked_lm", "--optimizer", "adam",
          "--adam-betas", "(0.9,0.98)", "--lr", "5e-4", "--lr-scheduler", "polynomial_decay", "--warmup-updates", "10",
          "--total-num-update", "1000", "--cpu", "--no-save", "--disable-validation", "--log-format", "json",
          "--log-interval", "10", "--skip-invalid-size-inputs-valid-test", "--seed", "1"]


def train_argv(data: Path, config: str, updates: int, break_mode: str | None, extra: list[str] = ()) -> list[str]:
    flags, mode, _, _ = CONFIGS[config]
    return [str(data), *flags, "--sample-break-mode", break_mode or mode, *COMMON, *extra, "--max-update", str(updates)]


def child_env(threads: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


def run_once(python: str, argv: list[str], updates: int, threads: int, workdir: str, log: Path):
    """(CPU s, wall s) of one fairseq-train process; checks from its log that it ran `updates` updates."""
    r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.call([python, "-m", "fairseq_cli.train", *argv], cwd=workdir, env=child_env(threads),
                             stdout=f, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    text = log.read_text()
    if rc != 0:
        sys.exit(f"{python} exited {rc}; last lines of {log}:\n" + "\n".join(text.splitlines()[-15:]))
    summary = [json.loads(l.split("| train | ", 1)[1]) for l in text.splitlines() if "| train | " in l]
    if not summary or int(float(summary[-1]["train_num_updates"])) != updates:
        sys.exit(f"{log}: expected an epoch summary with {updates} updates")
    if "| valid |" in text:
        sys.exit(f"{log}: validation ran inside the timed process")
    return (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime), wall


def timed_update_flops(data: Path, config: str, break_mode: str | None, n_long: int, n_short: int,
                       extra: list[str] = ()) -> tuple[float, float]:
    """Mean model FLOPs of the updates the subtraction times (epoch 1's batches n_short .. n_long-1), from
    our own data pipeline, which batches and masks as fairseq's does (the fixture's train.log losses agree):
    (as computed: every row padded to its batch's longest, as both implementations do; if padding were
    free: every row at its own length). roberta_train_flops per batch, with the batch's real masked count."""
    args = options.parse_args_and_arch(options.get_training_parser(),
                                       train_argv(data, config, n_long, break_mode, extra))
    args.num_workers = 0
    task = tasks.setup_task(args)
    task.load_dataset(args.train_subset, epoch=1)
    epoch_itr = train_batch_iterator(args, task, task.build_model(args), epoch=1)
    pad = task.source_dictionary.pad()
    dims = (args.encoder_layers, args.encoder_embed_dim, args.encoder_ffn_embed_dim, len(task.source_dictionary))
    padded = unpadded = 0.0
    for batch in itertools.islice(epoch_itr.next_epoch_itr(shuffle=True), n_short, n_long):
        tokens, masked = batch["net_input"]["src_tokens"], batch["target"].ne(pad)
        b, t = tokens.shape
        padded += roberta_train_flops(dims[0], t, *dims[1:], float(masked.sum()) / b, batch=b)
        for length, m in zip(tokens.ne(pad).sum(1).tolist(), masked.sum(1).tolist()):
            unpadded += roberta_train_flops(dims[0], length, *dims[1:], m)
    return padded / (n_long - n_short), unpadded / (n_long - n_short)


def identify(python: str, workdir: str) -> str:
    out = subprocess.run([python, "-c", "import fairseq, torch; print(fairseq.__version__, fairseq.__file__, "
                          "'torch', torch.__version__)"], cwd=workdir, env=child_env(1), capture_output=True, text=True)
    return (out.stdout or out.stderr).strip().splitlines()[-1]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=["C1", "C2"], choices=list(CONFIGS))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--updates", type=int, default=None, help="N, updates of the long run (default per config)")
    p.add_argument("--short", type=int, default=None, help="n0, updates of the start-up run (default per config)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--break-mode", choices=["none", "complete", "complete_doc", "eos"], default=None,
                   help="override every config's --sample-break-mode")
    p.add_argument("--extra", default="", help="more fairseq-train flags for both, as one string")
    p.add_argument("--ours-python", default=sys.executable)
    p.add_argument("--fairseq-python", default="/root/fairseq-ref/bin/python")
    p.add_argument("--dry-run", action="store_true", help="ours only, 1 round of 2 vs 1 updates (a smoke test)")
    p.add_argument("--keep-logs", type=Path, default=None, help="write every process's log into this folder (default: the temporary work folder)")
    a = p.parse_args(argv)
    impls = {"ours": a.ours_python} if a.dry_run else {"ours": a.ours_python, "fairseq": a.fairseq_python}
    rounds = 1 if a.dry_run else a.rounds
    workdir = tempfile.mkdtemp(prefix="bench_vs_fairseq.")
    logs = Path(a.keep_logs or workdir)
    logs.mkdir(parents=True, exist_ok=True)
    for name, py in impls.items():
        print(f"{name}: {py} -> fairseq {identify(py, workdir)}", flush=True)
    print(f"threads {a.threads}, CPU time (user + sys of each process and its children), {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}; data {a.data}", flush=True)
    results = {}
    logging.getLogger("fairseq").setLevel(logging.ERROR)  # timed_update_flops's loading: the runs' logs said it
    for config in a.configs:
        n_long = 2 if a.dry_run else a.updates or CONFIGS[config][2]
        n_short = 1 if a.dry_run else a.short or CONFIGS[config][3]
        assert n_long > n_short >= 1
        argv_long, argv_short = (train_argv(a.data, config, n, a.break_mode, shlex.split(a.extra))
                                 for n in (n_long, n_short))
        print(f"\n{config}: python -m fairseq_cli.train (fairseq-train) {shlex.join(argv_long)}"
              f"   (and --max-update {n_short})", flush=True)
        cpu = {k: [] for k in impls}
        wall = {k: [] for k in impls}
        for r in range(rounds):
            for name, py in impls.items():  # ours, fairseq, ours, fairseq, ...
                long_ = run_once(py, argv_long, n_long, a.threads, workdir,
                                 logs / f"{config}.{name}.r{r}.n{n_long}.log")
                short = run_once(py, argv_short, n_short, a.threads, workdir,
                                 logs / f"{config}.{name}.r{r}.n{n_short}.log")
                cpu[name].append((long_[0] - short[0]) / (n_long - n_short))
                wall[name].append((long_[1] - short[1]) / (n_long - n_short))
                print(f"  round {r} {name:8s} {cpu[name][-1]:.4f} CPU s/update ({wall[name][-1]:.4f} wall)   "
                      f"[{n_long} updates: {long_[0]:.1f} CPU s, {long_[1]:.1f} wall s; "
                      f"{n_short}: {short[0]:.1f}, {short[1]:.1f}]", flush=True)
        med = {k: statistics.median(v) for k, v in cpu.items()}
        line = f"{config} ours {med['ours']:.4f} s/update (CPU; wall {statistics.median(wall['ours']):.4f})"
        if "fairseq" in impls:
            ratios = [f / o for f, o in zip(cpu["fairseq"], cpu["ours"])]
            wall_ratio = statistics.median(wall["fairseq"]) / statistics.median(wall["ours"])
            line += (f"   fairseq {med['fairseq']:.4f} s/update (CPU; wall {statistics.median(wall['fairseq']):.4f})"
                     f"   ratio fairseq/ours {med['fairseq'] / med['ours']:.2f}x CPU (per round "
                     f"{', '.join(f'{x:.2f}' for x in ratios)}), {wall_ratio:.2f}x wall")
            results[config] = med["fairseq"] / med["ours"]
        print(line, flush=True)
        flops, unpadded = timed_update_flops(a.data, config, a.break_mode, n_long, n_short, shlex.split(a.extra))
        torch.set_num_threads(a.threads)
        peak = matmul_peak_flops(clock=time.process_time)
        rates = {k: flops / v / peak for k, v in med.items()}
        line = (f"{config} roofline: {flops / 1e9:.2f} GFLOP per update as computed (rows padded to the batch's "
                f"longest; {unpadded / 1e9:.2f} if padding were free); fp32 matmul peak {peak / 1e9:.1f} GFLOP "
                f"per CPU second ({a.threads} thread(s)); " + ", ".join(f"{k} {r:.0%} of peak" for k, r in rates.items()))
        if "fairseq" in rates:
            need = GOALS[config] * rates["fairseq"]
            line += (f"; {GOALS[config]}x fairseq would need {need:.0%} of peak, "
                     f"{need * unpadded / flops:.0%} if our update skipped the padding")
        print(line, flush=True)
    print(f"\nlogs: {logs}")
    return results


if __name__ == "__main__":
    main()
