"""fairseq-preprocess at two corpus sizes: peak memory (flat?) and throughput, optionally beside fairseq 0.12.2.

    python benchmarks/bench_preprocess.py                                   # 50 and 200 MB, 1 and 2 workers
    python benchmarks/bench_preprocess.py --sizes-mb 20 80 --fairseq-python /work/fairseq-ref/bin/python
    python benchmarks/bench_preprocess.py --sizes-mb 1 2                    # smoke run, seconds

The corpus is the fixture's BPE training text (fixtures/fairseq-peer/bpe/train.bpe) repeated with its
lines shuffled differently each time, written to a temporary directory and deleted afterwards.
Every run is a fresh `python -m fairseq_cli.preprocess --only-source` process; its peak memory is
measured two ways, with no extra package: `max_rss` is the largest single process's peak resident
set (getrusage RUSAGE_CHILDREN, read in a wrapper process that runs only that command), and
`tree_rss` is the largest sum of resident sets over the process and its workers, sampled from
/proc every 20 ms (forked workers share pages, so the sum over-counts them). `cpu` is the user +
system seconds of the process and its workers: MB per cpu-second compares implementations even when
other jobs leave the workers no free core. Prints one line per run and the ratios: memory at the
larger size over the smaller (flat memory: <= 1.3), throughput of 2 workers over 1, and ours over
fairseq's at equal workers. Wall-clock on a shared machine.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "..", "..", "shared", "fixtures", "fairseq-peer", "bpe", "train.bpe")
# Runs argv[1:] as a child; prints to stderr, last, the largest single-process peak RSS (KiB) among the
# child and its workers, and their CPU seconds (user + system) together.
_WRAPPER = (
    "import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); "
    "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
    "print('MAXRSS', u.ru_maxrss, u.ru_utime + u.ru_stime, file=sys.stderr); sys.exit(rc)"
)


def build_corpus(path: str, size_mb: float, source: str = SOURCE, seed: int = 0) -> int:
    """Write about size_mb MB of text to path by repeating source's lines, shuffled per copy."""
    with open(source, encoding="utf-8") as f:
        lines = f.readlines()
    rng = random.Random(seed)
    target = int(size_mb * 1e6)
    written = 0
    with open(path, "w", encoding="utf-8") as out:
        while written < target:
            rng.shuffle(lines)
            for line in lines:
                out.write(line)
                written += len(line.encode("utf-8"))
                if written >= target:
                    break
    return written


def _descendants(pid: int) -> list:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def fairseq_location(python: str, cwd: str) -> str:
    """Which fairseq package `python` imports when run from cwd (-m and -c put cwd first on sys.path)."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return subprocess.run([python, "-c", "import fairseq, os; print(os.path.dirname(fairseq.__file__))"], cwd=cwd,
                          env=env, capture_output=True, text=True, check=True).stdout.strip()


def run_once(python: str, corpus: str, workers: int, destdir: str) -> dict:
    """One preprocess run in a fresh process: wall seconds, max single-process RSS and sampled tree RSS (MiB).

    It runs in the corpus's directory, so a checkout in the current directory cannot shadow `python`'s fairseq.
    """
    cmd = [python, "-c", _WRAPPER, python, "-m", "fairseq_cli.preprocess", "--only-source", "--trainpref", corpus,
           "--destdir", destdir, "--workers", str(workers)]
    env = dict(os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1", OMP_NUM_THREADS="1")
    env.pop("PYTHONPATH", None)  # each python runs its own installed fairseq
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=os.path.dirname(corpus))
    tree_peak = 0
    while proc.poll() is None:
        tree_peak = max(tree_peak, sum(_rss_kib(p) for p in _descendants(proc.pid)[1:]))
        time.sleep(0.02)
    wall = time.perf_counter() - t0
    err = proc.stderr.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{python} fairseq_cli.preprocess failed (rc {proc.returncode}):\n{err[-2000:]}")
    _, max_rss, cpu = err.strip().splitlines()[-1].split()
    return {"wall": wall, "cpu": float(cpu), "max_rss": int(max_rss) / 1024, "tree_rss": tree_peak / 1024}


def same_output(a: str, b: str) -> bool:
    return all(open(os.path.join(a, f), "rb").read() == open(os.path.join(b, f), "rb").read()
               for f in ("dict.txt", "train.bin", "train.idx"))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes-mb", type=float, nargs=2, default=[50, 200], metavar=("SMALL", "LARGE"))
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--fairseq-python", default=None, help="python of a fairseq 0.12.2 install, run side by side")
    p.add_argument("--tmpdir", default=None, help="where to write the corpora (default: the system temp dir)")
    args = p.parse_args(argv)
    impls = [("ours", sys.executable)] + ([("fairseq", args.fairseq_python)] if args.fairseq_python else [])
    results = {}
    tmp = tempfile.mkdtemp(prefix="bench_preprocess.", dir=args.tmpdir)
    try:
        for name, python in impls:
            print(f"{name}: {python} -> {fairseq_location(python, tmp)}")
        for size in args.sizes_mb:
            corpus = os.path.join(tmp, f"corpus{size:g}.txt")
            nbytes = build_corpus(corpus, size)
            for workers in args.workers:
                outs = {}
                for name, python in impls:
                    outs[name] = os.path.join(tmp, f"{name}-{size:g}-{workers}")
                    r = run_once(python, corpus, workers, outs[name])
                    r["mb_s"] = nbytes / 1e6 / r["wall"]
                    r["mb_cpu_s"] = nbytes / 1e6 / max(r["cpu"], 1e-9)
                    results[(name, size, workers)] = r
                    print(f"{name:8s} {size:6g} MB  workers {workers}  {r['wall']:7.2f} s  {r['mb_s']:6.2f} MB/s  "
                          f"cpu {r['cpu']:7.2f} s  {r['mb_cpu_s']:6.2f} MB/cpu-s  "
                          f"max_rss {r['max_rss']:7.1f} MiB  tree_rss {r['tree_rss']:7.1f} MiB", flush=True)
                if "fairseq" in outs:
                    print(f"         output identical to fairseq's: {same_output(outs['ours'], outs['fairseq'])}")
                for d in outs.values():
                    shutil.rmtree(d)
            os.remove(corpus)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    small, large = args.sizes_mb
    print("ratios:")
    for name, _ in impls:
        for w in args.workers:
            a, b = results[(name, small, w)], results[(name, large, w)]
            print(f"  {name:8s} workers {w}: memory {large:g} MB / {small:g} MB: max_rss "
                  f"{b['max_rss'] / a['max_rss']:.2f}  tree_rss {b['tree_rss'] / max(a['tree_rss'], 1e-9):.2f}")
        for w in args.workers[1:]:
            for size in args.sizes_mb:
                print(f"  {name:8s} {size:g} MB: throughput workers {w} / workers {args.workers[0]}: "
                      f"{results[(name, size, w)]['mb_s'] / results[(name, size, args.workers[0])]['mb_s']:.2f}")
    if args.fairseq_python:
        for size in args.sizes_mb:
            for w in args.workers:
                o, f = results[("ours", size, w)], results[("fairseq", size, w)]
                print(f"  ours / fairseq {size:g} MB workers {w}: throughput {o['mb_s'] / f['mb_s']:.2f}  "
                      f"per cpu-second {o['mb_cpu_s'] / f['mb_cpu_s']:.2f}  max_rss {o['max_rss'] / f['max_rss']:.2f}")
    return results


if __name__ == "__main__":
    main()
