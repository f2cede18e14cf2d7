"""Peak memory and step time with and without --checkpoint-activations (CPU), one fresh process per variant.

A step is forward + backward + Adam through the real criterion (masked_lm; with --token-drop, the
token-dropping/ScTD step of fairseq.sctd). Peak memory is the process's peak resident set size
(ru_maxrss) minus the resident size right after building the model, optimizer state and batch, so it
counts what the step itself holds: activations, gradients, Adam moments (allocated on the first step).

    python benchmarks/bench_memory.py                          # roberta_base, T=512, batch 2, 3 steps
    python benchmarks/bench_memory.py --arch roberta_base --batch 1 --steps 2 --token-drop 0.5
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import types

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def child(a) -> None:
    sys.path.insert(0, REPO)
    from fairseq import sctd
    from fairseq.cpu_memory import keep_freed_memory
    from fairseq.data.dictionary import placeholder_dictionary
    from fairseq.models import build_model
    from fairseq.optim.adam import Adam
    from fairseq.registry import lookup
    from fairseq.token_drop import TokenDropper, add_token_drop_args

    torch.set_num_threads(a.threads)
    keep_freed_memory()
    torch.manual_seed(0)
    vocab = placeholder_dictionary(a.vocab)
    margs = argparse.Namespace(arch=a.arch, max_positions=a.seq, dropout=0.1, attention_dropout=0.1,
                               criterion="masked_lm", checkpoint_activations=a.checkpoint_activations)
    model = build_model(margs, vocab)
    p = argparse.ArgumentParser()
    add_token_drop_args(p)
    targs = p.parse_args(["--token-drop", str(a.token_drop), "--sctd-interval", "0"])
    task = types.SimpleNamespace(source_dictionary=vocab, target_dictionary=vocab,
                                 token_dropper=TokenDropper(targs, vocab, margs.encoder_layers)
                                 if a.token_drop > 0 else None)
    crit = lookup("criterion", "masked_lm").build_criterion(margs, task)
    opt = Adam(model.parameters(), lr=1e-4, eps=1e-6, weight_decay=0.01)
    g = torch.Generator().manual_seed(0)
    src = torch.randint(4, a.vocab - 1, (a.batch, a.seq), generator=g)
    src[:, 0] = 0
    m = torch.rand(a.batch, a.seq, generator=g) < 0.15
    m[:, 0] = False
    sample = {"id": torch.arange(a.batch), "net_input": {"src_tokens": src.masked_fill(m, a.vocab - 1)},
              "target": torch.where(m, src, torch.ones_like(src)), "ntokens": src.numel(), "nsentences": a.batch}
    base = rss_mib()
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        if task.token_dropper is None:
            model.train()
            crit(model, sample)[0].backward()
        else:
            sctd.train_step(task, sample, model, crit, None, update_num=1)
            task.token_dropper.importance.apply()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_mib": peak - base, "base_mib": base, "step_s": sorted(times)[len(times) // 2],
                      "times": times}))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="roberta_base")
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--vocab", type=int, default=50265)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--token-drop", type=float, default=0.0)
    ap.add_argument("--checkpoint-activations", action="store_true")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        return child(a)
    print(f"{a.arch} T={a.seq} batch {a.batch} vocab {a.vocab} token_drop {a.token_drop} threads {a.threads}, "
          f"median step of {a.steps}")
    rows = {}
    for ckpt in (False, True):
        cmd = [sys.executable, os.path.abspath(__file__), "--child", "--arch", a.arch, "--seq", str(a.seq),
               "--batch", str(a.batch), "--vocab", str(a.vocab), "--steps", str(a.steps),
               "--threads", str(a.threads), "--token-drop", str(a.token_drop)]
        out = subprocess.run(cmd + (["--checkpoint-activations"] if ckpt else []), capture_output=True,
                             text=True, check=True).stdout
        rows[ckpt] = json.loads(out.strip().splitlines()[-1])
    for ckpt, r in rows.items():
        print(f"{'--checkpoint-activations' if ckpt else 'plain':<26} step peak {r['peak_mib']:8.0f} MiB over "
              f"{r['base_mib']:.0f} MiB at start, step {r['step_s']:.2f} s  (steps s {[round(t, 2) for t in r['times']]})")
    print(f"memory ratio {rows[True]['peak_mib'] / rows[False]['peak_mib']:.2f}, "
          f"step-time ratio {rows[True]['step_s'] / rows[False]['step_s']:.2f}")


if __name__ == "__main__":
    main()
