"""One command for the day a GPU is lent: does the CUDA side of fairseq-sctd work, and how fast is it?

    python benchmarks/gpu_check.py                    # one H100/H200, ~5-8 minutes
    python benchmarks/gpu_check.py --peak-tflops 312  # A100 (bf16 dense peak, for the MFU line)

UNTESTED ON A GPU: written on a CPU-only machine. On a machine without CUDA it prints one line and exits 2.
`--dry-run` runs every section on the CPU at toy sizes (a 4-layer, 64-wide model, T = 64, 2 updates, gloo
instead of NCCL, no compiling): it checks the script itself, not the GPU, and its numbers mean nothing;
tests/test_gpu_check.py runs it, so the day a GPU is lent the script does not die on its own bug.

Sections (each prints its numbers, or FAIL with a one-line reason; the exit status is 1 if any failed):
  train     the paper's command (SPEC section 1) shrunk to roberta_base, 40 updates, on a synthetic data-bin,
            once each with --memory-efficient-fp16, --fp16, --bf16 and --bf16 --compile: updates/s, final
            loss, fp16 overflows (skipped updates; a storm = more than a quarter of the updates), loss scale
  ddp       a one-GPU torchrun start: NCCL process group, DDP with our summing gradient hook, 3 steps
  mfu       roberta_base, T=512, bf16 autocast, eager and --compile: model-FLOP utilisation vs --peak-tflops
            (goal >= 45%; fairseq.flops.roberta_train_flops)
  drop      token-drop and ScTD step-time ratios vs full (roberta_base, T=512, bf16) beside the ideal FLOP ratio
  memory    roberta_large, T=512, batch 8, fp16 autocast + Adam: torch.cuda.max_memory_allocated with and
            without --checkpoint-activations, and whether each fits in 24 GB
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import types

import numpy as np
import torch
import torch.distributed as dist

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from fairseq import sctd  # noqa: E402
from fairseq.distributed import wrap
from fairseq.compile import compile_model  # noqa: E402
from fairseq.data.dictionary import placeholder_dictionary  # noqa: E402
from fairseq.data.indexed_dataset import MMapIndexedDatasetBuilder, best_fitting_dtype  # noqa: E402
from fairseq.flops import roberta_train_flops, sctd_full_pass_ratio, token_drop_step_ratio  # noqa: E402
from fairseq.models import build_model  # noqa: E402
from fairseq.registry import lookup  # noqa: E402
from fairseq.token_drop import TokenDropper, add_token_drop_args  # noqa: E402

VOCAB_WORDS = 8000
GIB = 1024 ** 3
OVERFLOW = re.compile(r"gradient overflow")  # the trainer's log line for an update skipped by the loss scaler
# --dry-run: every architecture shrunk to this (the sections' code paths, at CPU speed)
TOY_MODEL = {"encoder_layers": 4, "encoder_embed_dim": 64, "encoder_ffn_embed_dim": 256, "encoder_attention_heads": 2}


def set_sizes(a) -> None:
    """The sizes every section runs at: the GPU's (T = 512, the real architectures) or --dry-run's toy ones."""
    if a.dry_run:
        a.device, a.seq, a.mfu_batch, a.train_updates, a.memory_batch, a.model = "cpu", 64, 2, 2, 2, TOY_MODEL
    else:
        a.device, a.seq, a.memory_batch, a.model = "cuda", 512, 8, {}


def model_flags(a) -> list:
    return [x for k, v in a.model.items() for x in (f"--{k.replace('_', '-')}", str(v))]


def sync(a) -> None:
    if a.device == "cuda":
        torch.cuda.synchronize()


def reset_peak_memory(a) -> None:
    if a.device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_memory_gib(a) -> float:
    """torch.cuda.max_memory_allocated in GiB; NaN on the CPU (--dry-run), which has no such counter."""
    return torch.cuda.max_memory_allocated() / GIB if a.device == "cuda" else float("nan")


def write_data_bin(out_dir: str, n_train: int = 4000, n_valid: int = 100, seed: int = 0) -> str:
    """A synthetic fairseq data-bin (dict.txt + train/valid .bin/.idx), Zipf-like ids, 20..300-token lines."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "dict.txt"), "w") as f:
        for i in range(VOCAB_WORDS):
            f.write(f"w{i} {VOCAB_WORDS - i}\n")
    rng = np.random.default_rng(seed)
    dtype = best_fitting_dtype(VOCAB_WORDS + 5)
    for split, n in (("train", n_train), ("valid", n_valid)):
        b = MMapIndexedDatasetBuilder(os.path.join(out_dir, f"{split}.bin"), dtype=dtype)
        for _ in range(n):
            length = int(rng.integers(20, 300))
            ids = np.minimum(rng.zipf(1.2, length), VOCAB_WORDS) + 3   # dictionary ids 4..VOCAB_WORDS+3
            b.add_item(np.append(ids, 2))                              # </s> ends every line
        b.finalize(os.path.join(out_dir, f"{split}.idx"))
    return out_dir


def papers_command(a, data: str, save_dir: str, precision: list) -> list:
    updates, seq = a.train_updates, str(a.seq)
    return [data, "--train-subset", "train", "--valid-subset", "valid", "--skip-invalid-size-inputs-valid-test",
            *precision, "--arch", "roberta_base", *model_flags(a), "--task", "masked_lm",
            "--sample-break-mode", "complete", "--batch-size", "8", "--tokens-per-sample", seq,
            "--save-interval", "1", "--save-interval-updates", "10000", "--keep-interval-updates", "25",
            "--no-epoch-checkpoints", "--optimizer", "adam", "--adam-betas", "(0.9, 0.999)", "--adam-eps", "1e-06",
            "--weight-decay", "0.01", "--clip-norm", "0.0", "--lr", "2e-4", "--lr-scheduler", "polynomial_decay",
            "--warmup-updates", str(updates // 4), "--dropout", "0.1", "--token-drop", "0.5", "--max-positions", seq,
            "--attention-dropout", "0.1", "--update-freq", "2", "--ddp-backend=legacy_ddp",
            "--total-num-update", str(updates), "--max-update", str(updates), "--max-epoch", "40",
            "--save-dir", save_dir, "--log-format", "json", "--log-interval", str(min(10, updates)), "--no-save",
            "--disable-validation"]


def run_cli(cmd: list, timeout: int) -> tuple:
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout + p.stderr, time.perf_counter() - t0


def last_json(log: str, tag: str) -> dict:
    rows = [json.loads(m.group(1)) for m in re.finditer(rf"\| {tag} \| (\{{.*\}})", log)]
    return rows[-1] if rows else {}


def check_train(a, data: str) -> None:
    variants = [("--memory-efficient-fp16", ["--memory-efficient-fp16", "--fp16-init-scale", "8"]),
                ("--fp16", ["--fp16", "--fp16-init-scale", "8"]), ("--bf16", ["--bf16"]),
                ("--bf16 --compile", ["--bf16", "--compile"])]
    for name, prec in variants:
        if a.dry_run and "--compile" in prec:
            print(f"train  {name:<26} skipped in --dry-run (tests/test_compile.py covers --compile)", flush=True)
            continue
        with tempfile.TemporaryDirectory() as save:
            cmd = [sys.executable, "-m", "fairseq_cli.train",
                   *papers_command(a, data, save, prec)]
            rc, log, secs = run_cli(cmd, timeout=300)
        overflows = len(OVERFLOW.findall(log))
        last = last_json(log, "train_inner")
        if rc != 0:
            tail = log.strip().splitlines()[-1] if log.strip() else "(no output)"
            print(f"train  {name:<26} FAIL rc={rc}: {tail}", flush=True)
            a.failed = True
            continue
        storm = overflows > a.train_updates // 4
        print(f"train  {name:<26} {'FAIL overflow storm' if storm else 'ok'}: {secs:.0f} s wall, "
              f"{last.get('ups', '?')} updates/s, loss {last.get('loss', '?')}, overflows {overflows}, "
              f"loss_scale {last.get('loss_scale', '-')}", flush=True)
        a.failed |= storm


def check_ddp(a, data: str) -> None:
    """torchrun with one process: an NCCL group and a DDP-wrapped model with our summing gradient hook.

    (fairseq-train itself treats a one-process torchrun job as single-process, so it never starts NCCL.)"""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
           os.path.abspath(__file__), "--ddp-worker", *(["--dry-run"] if a.dry_run else [])]
    rc, log, secs = run_cli(cmd, timeout=300)
    ok = rc == 0 and "ddp worker ok" in log
    detail = next((line for line in log.splitlines() if "ddp worker ok" in line), None) if ok else None
    where = "GPU, NCCL" if a.device == "cuda" else "CPU, gloo"
    print(f"ddp    torchrun 1 {where}      {'ok' if ok else 'FAIL'}: rc={rc}, {secs:.0f} s: "
          + (detail or (log.strip().splitlines()[-1] if log.strip() else "(no output)")), flush=True)
    a.failed |= not ok


def ddp_worker(a) -> int:
    if a.device == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group("nccl" if a.device == "cuda" else "gloo")
    model, task, crit, opt, _ = build(a, "roberta_base", 128)
    ddp = torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[torch.cuda.current_device()] if a.device == "cuda" else None)
    ddp.register_comm_hook(None, wrap._sum_allreduce_hook)
    sample, _ = batch(a, 4, 128)
    for _ in range(3):
        step(a, (ddp, task, crit, opt, None), sample, torch.bfloat16)
    t = torch.ones(1, device=a.device)
    dist.all_reduce(t)
    print(f"ddp worker ok: backend {dist.get_backend()}, world {dist.get_world_size()}, all_reduce {t.item():g}, "
          f"3 DDP steps", flush=True)
    dist.destroy_process_group()
    return 0


# --------------------------------------------------------------------------- in-process timing


def build(a, arch: str, seq: int, token_drop: float = 0.0, interval: int = 0, checkpoint_activations=False,
          compiled=False):
    torch.manual_seed(0)
    vocab = placeholder_dictionary(50265)  # RoBERTa's GPT-2 vocabulary size, for realistic LM-head cost
    args = argparse.Namespace(arch=arch, max_positions=seq, dropout=0.1, attention_dropout=0.1,
                              criterion="masked_lm", checkpoint_activations=checkpoint_activations, **a.model)
    model = build_model(args, vocab).to(a.device)
    if compiled:
        compile_model(model)
    p = argparse.ArgumentParser()
    add_token_drop_args(p)
    targs = p.parse_args(["--token-drop", str(token_drop), "--sctd-interval", str(interval)])
    task = types.SimpleNamespace(source_dictionary=vocab, target_dictionary=vocab, token_dropper=None)
    if token_drop > 0:
        task.token_dropper = TokenDropper(targs, vocab, args.encoder_layers)
    crit = lookup("criterion", "masked_lm").build_criterion(args, task)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    return model, task, crit, opt, args


def batch(a, n: int, seq: int, vocab: int = 50265, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, vocab - 1, (n, seq), generator=g)
    src[:, 0], src[:, -1] = 0, 2
    m = torch.rand(n, seq, generator=g) < 0.15
    m[:, 0] = m[:, -1] = False
    tgt = torch.where(m, src, torch.full_like(src, 1))
    src = src.masked_fill(m, vocab - 1)
    s = {"id": torch.arange(n), "net_input": {"src_tokens": src.to(a.device)}, "target": tgt.to(a.device),
         "ntokens": src.numel(), "nsentences": n}
    return s, float(m.sum()) / n


def step(a, setup, sample, dtype, update_num=1):
    model, task, crit, opt, _ = setup
    model.train()
    with torch.autocast(a.device, dtype=dtype):
        if task.token_dropper is None:
            loss, _, _ = crit(model, sample)
        else:
            loss, _, _ = sctd.compute_loss(task.token_dropper, sample, model, crit, update_num)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    if task.token_dropper is not None:
        task.token_dropper.importance.apply()


def timed_steps(a, setup, sample, dtype, n: int, warmup: int, update_num=1) -> float:
    for _ in range(warmup):
        step(a, setup, sample, dtype, update_num)
    times = []
    for _ in range(n):
        sync(a)
        t0 = time.perf_counter()
        step(a, setup, sample, dtype, update_num)
        sync(a)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def check_mfu(a) -> None:
    seq = a.seq
    for compiled in (False, True):
        if compiled and a.dry_run:
            print("mfu    compiled: skipped in --dry-run (tests/test_compile.py covers --compile)", flush=True)
            continue
        reset_peak_memory(a)
        setup = build(a, "roberta_base", seq, compiled=compiled)
        args = setup[4]
        sample, masked = batch(a, a.mfu_batch, seq)
        t0 = time.perf_counter()
        step(a, setup, sample, torch.bfloat16)
        sync(a)
        first = time.perf_counter() - t0
        t = timed_steps(a, setup, sample, torch.bfloat16, n=10, warmup=3)
        flops = roberta_train_flops(args.encoder_layers, seq, args.encoder_embed_dim, args.encoder_ffn_embed_dim,
                                    50265, masked, a.mfu_batch)
        mfu = flops / t / (a.peak_tflops * 1e12)
        name = "compiled" if compiled else "eager"
        print(f"mfu    roberta_base T={seq} bf16 {name:<8} {'ok' if mfu >= 0.45 else 'below goal'}: "
              f"batch {a.mfu_batch}, step {t * 1e3:.1f} ms (first {first:.1f} s), "
              f"{a.mfu_batch * seq / t:,.0f} tok/s, {flops / t / 1e12:.0f} TFLOP/s = MFU {100 * mfu:.1f}% "
              f"of {a.peak_tflops:g} (goal 45%), peak memory {peak_memory_gib(a):.1f} GiB", flush=True)
        del setup


def check_drop(a) -> None:
    seq = a.seq
    sample, _ = batch(a, a.mfu_batch, seq)
    setups = {"full": build(a, "roberta_base", seq), "drop": build(a, "roberta_base", seq, 0.5, 0),
              "sctd": build(a, "roberta_base", seq, 0.5, 1)}
    times = {k: [] for k in setups}
    for r in range(3 + 10):
        for k, s in setups.items():
            t = timed_steps(a, s, sample, torch.bfloat16, n=1, warmup=0, update_num=0 if k == "sctd" else 1)
            if r >= 3:
                times[k].append(t)
    med = {k: statistics.median(v) for k, v in times.items()}
    args = setups["full"][4]
    shape = (args.encoder_layers, seq, args.encoder_embed_dim, args.encoder_ffn_embed_dim)
    ideal, full_pass = token_drop_step_ratio(*shape, 0.5), sctd_full_pass_ratio(*shape)
    drop, two = med["drop"] / med["full"], med["sctd"] / med["full"]
    sctd_avg = (two + 9 * drop) / 10
    print(f"drop   roberta_base T={seq} bf16 p=0.5: token drop {drop:.3f} of full (ideal {ideal:.3f}), "
          f"ScTD two-pass update {two:.3f} (ideal {ideal + full_pass:.3f}), ScTD average Fi=10 {sctd_avg:.3f} "
          f"(ideal {ideal + full_pass / 10:.3f}); full step {med['full'] * 1e3:.1f} ms", flush=True)


def check_memory(a) -> None:
    for ckpt in (False, True):
        reset_peak_memory(a)
        setup = build(a, "roberta_large", a.seq, checkpoint_activations=ckpt)
        sample, _ = batch(a, a.memory_batch, a.seq)
        try:
            step(a, setup, sample, torch.float16)
            step(a, setup, sample, torch.float16)  # the second step holds the Adam state too
            sync(a)
            peak = peak_memory_gib(a)
            verdict = ("fits" if peak * GIB < 24e9 else "does NOT fit") + " in 24 GB"
            print(f"memory roberta_large T={a.seq} batch {a.memory_batch} fp16 "
                  f"{'--checkpoint-activations' if ckpt else 'plain':<25} max_memory_allocated {peak:.1f} GiB: "
                  f"{verdict if a.device == 'cuda' else 'ran (the CPU has no such counter)'}", flush=True)
        except torch.cuda.OutOfMemoryError:
            print(f"memory roberta_large checkpoint_activations={ckpt}: out of memory on this GPU", flush=True)
        del setup
    reset_peak_memory(a)


SECTIONS = {"train": None, "ddp": None, "mfu": check_mfu, "drop": check_drop, "memory": check_memory}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--peak-tflops", type=float, default=989.0,
                   help="dense bf16 peak of the GPU in TFLOP/s (H100/H200 SXM: ~989; A100: 312)")
    p.add_argument("--mfu-batch", type=int, default=16, help="sequences of 512 tokens per MFU/drop step")
    p.add_argument("--train-updates", type=int, default=40, help="updates per shrunk paper's-command run")
    p.add_argument("--only", nargs="+", choices=list(SECTIONS), default=list(SECTIONS), help="sections to run")
    p.add_argument("--dry-run", action="store_true",
                   help="every section on the CPU at toy sizes: checks the script, not the GPU (numbers mean nothing)")
    p.add_argument("--ddp-worker", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    set_sizes(a)
    if not a.dry_run and not torch.cuda.is_available():
        print(f"gpu_check: error: CUDA is not available (torch {torch.__version__}, "
              f"{'a CPU-only build' if torch.version.cuda is None else 'no GPU visible'}); "
              "this check needs one NVIDIA GPU", file=sys.stderr)
        return 2
    if a.ddp_worker:
        return ddp_worker(a)
    a.failed = False
    if a.dry_run:
        print(f"gpu_check --dry-run: CPU, toy sizes ({TOY_MODEL['encoder_layers']} layers x "
              f"{TOY_MODEL['encoder_embed_dim']}, T = {a.seq}): checks the script itself; the numbers mean nothing",
              flush=True)
    else:
        print(f"gpu_check: {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}",
              flush=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        data = write_data_bin(os.path.join(tmp, "data-bin")) if "train" in a.only else None
        for name in a.only:
            try:
                if name == "train":
                    check_train(a, data)
                elif name == "ddp":
                    check_ddp(a, data)
                else:
                    SECTIONS[name](a)
            except Exception as e:  # report and go on: one broken section must not hide the others
                print(f"{name:<6} FAIL {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", flush=True)
                a.failed = True
    print(f"gpu_check: {'FAILED' if a.failed else 'done'} in {time.perf_counter() - t0:.0f} s")
    return 1 if a.failed else 0


if __name__ == "__main__":
    sys.exit(main())
