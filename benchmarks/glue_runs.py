"""Downstream check: fine-tune pretrained checkpoints on GLUE tasks for several seeds, print the medians.

Each (checkpoint, task, seed) is one run of examples/sctd/glue.sh (fairseq-glue-prep, then fairseq-train
--task sentence_prediction with fairseq's RoBERTa recipe for that task, then the best dev metric of the
run's validations). A run's result is kept in --work-dir, so a rerun skips the runs already done; the
table (medians over seeds of each best dev metric) goes to PREFIX.md and PREFIX.json (--results).

    python benchmarks/glue_runs.py --checkpoint full=runs/quality/runs/full-s1/checkpoint_last.pt \\
        --checkpoint sctd=runs/quality/runs/sctd-phases-s1/checkpoint_last.pt --dict-dir runs/quality \\
        --tasks STS-B,MRPC --seeds 1,2,3

--dict-dir holds the pretraining dict.txt and its BPE (tokenizer.json): for the quality study that is
<work-dir>/data-bin/dict.txt and <work-dir>/bpe/tokenizer.json, so either give a folder with both or
--dict and --tokenizer-json separately. --max-epoch scales the recipe's update counts (written for 10
epochs); --max-update caps each run (smoke tests). --lr replaces the recipe's per-task lr (1e-5 or 2e-5,
tuned for roberta-base after 500k updates): a small encoder pretrained for minutes learns next to nothing
at that lr in one epoch; ELECTRA-Small's published fine-tuning lr is 3e-4.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from fairseq_cli.glue_report import baseline

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FAIRSEQ_SCTD_SHARED", REPO.parent / "shared"))
# fairseq's RoBERTa GLUE recipe: total updates and warmup for 10 epochs (as in examples/sctd/glue.sh)
RECIPE_UPDATES = {"MRPC": (2296, 137), "STS-B": (3598, 214), "RTE": (2036, 122), "CoLA": (5336, 320),
                  "SST-2": (20935, 1256), "QNLI": (33112, 1986), "WNLI": (2036, 122)}


def dict_dir(a, work: Path) -> Path:
    """A folder with dict.txt and tokenizer.json, as glue.sh wants (links to the given files)."""
    if a.dict_dir:
        return Path(a.dict_dir)
    folder = work / "dict"
    folder.mkdir(parents=True, exist_ok=True)
    for src, name in ((a.dict, "dict.txt"), (a.tokenizer_json, "tokenizer.json")):
        link = folder / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(Path(src).resolve())
    return folder


def parse_best(output: str, task: str) -> dict[str, float]:
    """glue.sh's line 'TASK best dev: loss=..., accuracy=... (majority class ...), ...' -> {name: value}."""
    lines = [line for line in output.splitlines() if line.startswith(f"{task} best dev: ")]
    if not lines:
        raise RuntimeError(f"{task}: glue.sh printed no 'best dev' line; its output ends:\n{output[-2000:]}")
    pairs = re.findall(r"([a-z0-9_]+)=([^,\s]+)", lines[-1].split(": ", 1)[1])
    return {k: float(v) for k, v in pairs if v != "n/a"}


def run_one(a, name: str, ckpt: str, task: str, seed: int, dicts: Path, work: Path) -> dict[str, float]:
    """One fine-tuning run through examples/sctd/glue.sh; its best dev metrics (cached in its folder)."""
    out = work / name / task / f"seed{seed}"
    done = out / "result.json"
    if done.is_file():
        print(f"{name} {task} seed {seed}: done earlier, skipped", flush=True)
        return json.loads(done.read_text())
    total, warmup = RECIPE_UPDATES[task]
    env = dict(os.environ, OUT_DIR=str(out), MAX_EPOCH=str(a.max_epoch),
               TOTAL_NUM_UPDATES=str(max(1, round(total * a.max_epoch / 10))),
               WARMUP_UPDATES=str(max(1, round(warmup * a.max_epoch / 10))), PYTHON=sys.executable,
               **({"LR": repr(a.lr)} if a.lr else {}),
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    extra = ["--seed", str(seed), "--no-save"] + (["--max-update", str(a.max_update)] if a.max_update else [])
    cmd = ["bash", str(REPO / "examples" / "sctd" / "glue.sh"), task, a.glue_dir, ckpt, str(dicts), *extra]
    print(f"{name} {task} seed {seed}: " + " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} {task} seed {seed}: glue.sh exited {proc.returncode}:\n"
                           f"{(proc.stdout + proc.stderr)[-2000:]}")
    best = parse_best(proc.stdout, task)
    done.write_text(json.dumps(best))
    return best


def table(results: dict, baselines: dict) -> str:
    """Markdown: one row per checkpoint, medians over seeds of each task's best dev metrics (x100, as logged),
    and a last row with the majority-class baseline of each (task, metric) (`baselines`: task -> (label,
    {metric: score}) or None, fairseq_cli.glue_report.baseline)."""
    tasks = sorted({t for per in results.values() for t in per})
    cols = [(t, m) for t in tasks for m in sorted({m for per in results.values() for r in per.get(t, [])
                                                   for m in r if m != "loss"})]
    lines = ["| checkpoint | " + " | ".join(f"{t} {m}" for t, m in cols) + " |",
             "| --- |" + " --- |" * len(cols)]
    for name, per in results.items():
        cells = []
        for t, m in cols:
            values = [r[m] for r in per.get(t, []) if m in r]
            cells.append(f"{float(np.median(values)):.1f} ({len(values)})" if values else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    majority = [f"{baselines[t][1][m]:.1f}" if baselines.get(t) and m in baselines[t][1] else "-" for t, m in cols]
    lines.append("| majority class | " + " | ".join(majority) + " |")
    return "\n".join(lines) + ("\n\n(medians over seeds of the best dev metric of each run, x100; (n) = seeds; "
                               "majority class: always the most frequent train label, on the same dev set)\n")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", action="append", required=True, metavar="NAME=PATH",
                    help="a pretrained checkpoint to fine-tune (repeat the flag for several)")
    ap.add_argument("--dict-dir", help="folder with the pretraining dict.txt and tokenizer.json")
    ap.add_argument("--dict", help="the pretraining dict.txt (with --tokenizer-json, instead of --dict-dir)")
    ap.add_argument("--tokenizer-json", help="the pretraining BPE's tokenizer.json")
    ap.add_argument("--glue-dir", default=str(SHARED / "data" / "glue"))
    ap.add_argument("--tasks", default="STS-B,MRPC", help=f"comma-separated subset of {','.join(RECIPE_UPDATES)}")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--max-epoch", type=int, default=10, help="epochs (the recipe's update counts are scaled)")
    ap.add_argument("--max-update", type=int, default=0, help="cap each run at N updates (0: no cap)")
    ap.add_argument("--lr", type=float, default=0.0, help="lr of every task (0: the recipe's per-task lr)")
    ap.add_argument("--work-dir", default="runs/glue")
    ap.add_argument("--results", default=str(REPO / "benchmarks" / "results" / "glue"), help="PREFIX.md/.json")
    a = ap.parse_args(argv)
    checkpoints = {}
    for spec in a.checkpoint:
        name, sep, path = spec.partition("=")
        if not sep or not name or not Path(path).is_file():
            ap.error(f"--checkpoint {spec!r}: give NAME=PATH of an existing checkpoint file")
        checkpoints[name] = path
    tasks = [t for t in a.tasks.split(",") if t]
    for t in tasks:
        if t not in RECIPE_UPDATES:
            ap.error(f"--tasks: unknown task {t!r}; choose from: {', '.join(RECIPE_UPDATES)}")
    if (a.dict_dir is None) != bool(a.dict and a.tokenizer_json) or (a.dict_dir and (a.dict or a.tokenizer_json)):
        ap.error("give --dict-dir, or both --dict and --tokenizer-json")
    if a.max_epoch < 1 or a.max_update < 0 or a.lr < 0:
        ap.error(f"--max-epoch {a.max_epoch} must be >= 1, --max-update {a.max_update} >= 0, --lr {a.lr} >= 0")
    try:
        seeds = [int(s) for s in a.seeds.split(",") if s]
    except ValueError:
        ap.error(f"--seeds {a.seeds!r}: comma-separated integers")
    work = Path(a.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    dicts = dict_dir(a, work)
    results = {name: {} for name in checkpoints}
    try:
        baselines = {task: baseline(task, a.glue_dir) for task in tasks}
        for name, ckpt in checkpoints.items():
            for task in tasks:
                for seed in seeds:
                    results[name].setdefault(task, []).append(run_one(a, name, ckpt, task, seed, dicts, work))
                    Path(a.results).parent.mkdir(parents=True, exist_ok=True)
                    Path(f"{a.results}.json").write_text(json.dumps(results, indent=1))
                    Path(f"{a.results}.md").write_text(table(results, baselines))
    except (RuntimeError, FileNotFoundError, ValueError) as e:
        sys.exit(f"glue_runs.py: error: {e}")
    print("\n" + table(results, baselines), flush=True)
    return results


if __name__ == "__main__":
    main()
