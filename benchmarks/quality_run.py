"""Quality study: the standard recipe beside levers and token dropping, equal compute, several seeds, resumable.

Each run = (variant, seed) trains a small RoBERTa on Project Gutenberg (../shared/data/gutenberg_rcdm:
the first --books books train, the next --valid-books validate). The runs of one process train side by
side (fairseq_cli/quickstart/side_by_side.py): updates interleaved, each run on its own clock (the sum of
its own update wall times), so machine load hits every run alike. Every --evals-th of a run, the
validation MLM loss of the full model (and, for dropping variants, of the token-dropping forward: the
gap diagnostic) is logged on that clock.

Variants (benchmarks/quality_variants.py): `full`, the standard RoBERTa recipe (adam, polynomial_decay),
is the baseline; every other variant is levers joined by "+" (`cosine`, `lamb`, `seqlen`, `ramp`,
`timeclock`, `drop-phases`, `random-ltd`, `seqlen+ramp+drop-phases`, ...), and `--variants screen`
names the study's screen (every lever alone, the dropping ones, each lever with Hou's token dropping;
`screen-timeclock` the time-clock runs, `confirm` the confirmation's variants).
Update counts: the baseline trains --updates; every other variant trains as many updates as cost the
same ideal FLOPs (quality_variants.mean_update_cost over its exact schedule), so each run has the same
compute. A `timeclock` run instead trains until its own step time reaches the time budget, its lr
schedule on that clock: the baseline's expected time, --updates times the median of the baseline's
step times over its warm-up (10%) in this process (the timeclock runs join then; kept in the work
dir's time-budget.json for later sessions), or --time-budget-s. The figure of merit
(benchmarks/quality_results.py): the time each run needs to reach the baseline's final validation
loss, / the baseline's time, paired by seed within one process, median over seeds.

Blocks: --sample-break-mode none (text packed into full blocks across lines). With "complete", every
line longer than a block is skipped, and Gutenberg's one-paragraph-per-line text lost 9,568 of 30,415
train blocks (31%, the longest paragraphs) that way at T = 128.

Hyperparameters (stability, as the references): Adam (0.9, 0.98), eps 1e-6, weight decay 0.01,
clip-norm 1.0, linear warmup over 10% of the run, polynomial (linear) decay to 0 at the run's end,
dropout 0.1. lr: ELECTRA-Small's published 5e-4 (the closest recipe for a 256-wide encoder; the TF
token-dropping recipe's 1e-4 at batch 512 is for BERT-base/large widths). Not scaled down to batch 16
(sqrt scaling would give 1.77e-4): a study that fits one CPU session has 400 updates, and warmup plus
clipping, not a small step, are what keep it stable. --lr overrides.

Finished runs are also read back from the committed results file, so a later session does not retrain
them; --retrain NAME trains one again for its checkpoint (GLUE) and prints how far its losses are from the
committed ones (seed 1 of 2026-12-02's runs, retrained: at most 1.8e-5 bits).

Resumable and spread across sessions: OUT (--work-dir) holds data-bin/ and runs/<variant>-s<seed>/
(checkpoint_last.pt: an ordinary fairseq checkpoint, plus the run's clock and points). A rerun skips
finished runs and continues unfinished ones from their checkpoints, bit-identically on CPU;
--session-minutes / --session-updates end a session cleanly (saved). The results (--results PREFIX:
.json, .md and .png) are rewritten after every checkpoint, so they can be committed between sessions.
Step times are comparable between runs that trained in the same session; the table says which did, and
the time ratios and the plot pair a run only with the full run of its own session. A command naming fewer
variants keeps the results file's other runs unchanged.

    # issue 28's study (docs/results.md): the screen, one process per seed, both at once (1 thread each;
    # clocks compare within a process), then one table of both seeds
    for s in 1 2; do python benchmarks/quality_run.py --work-dir runs/levers/screen-s$s \\
        --results benchmarks/results/levers-screen-s$s --variants screen --seeds $s --ablations '' \\
        --layers 6 --dim 128 --updates 300 --evals 8 --valid-batches 12 --threads 1 & done; wait
    python benchmarks/quality_run.py --merge benchmarks/results/levers-screen-s1 \\
        benchmarks/results/levers-screen-s2 --results benchmarks/results/levers-screen
    # ... the time-clock runs beside their own baseline (both seeds in one process)
    python benchmarks/quality_run.py --work-dir runs/levers/timeclock --results benchmarks/results/levers-timeclock \\
        --variants screen-timeclock --seeds 1,2 --ablations '' --layers 6 --dim 128 --updates 300 --evals 8 \\
        --valid-batches 12 --threads 1
    # ... and the confirmation, 4x longer (the same loop and merge with --variants confirm --updates 1200
    # --evals 12, results benchmarks/results/levers-confirm-s$s, merged into levers-confirm)
    # the earlier study (2026-12-02; hours of CPU; run it across sessions, the same command each time)
    python benchmarks/quality_run.py --work-dir runs/quality --session-minutes 170
    # the longer runs of 2026-12-03 (one seed, ~28 min of step time per run on a quiet 2-core machine)
    python benchmarks/quality_run.py --work-dir /root/sctd-long --results benchmarks/results/quality-long \\
        --variants full,drop,sctd --seeds 1 --ablations '' --updates 2250 --evals 12
    # ... and drop-phases beside the full model retrained (2026-12-04, ~42 min per run at 1.08 s per full update)
    python benchmarks/quality_run.py --work-dir /root/sctd-long2 --results benchmarks/results/quality-long-phases \\
        --variants full,drop-phases --seeds 1 --ablations '' --updates 2250 --evals 12
    # seed 1 of ScTD beside full-s1 trained again (2026-12-04 evening), then one table and plot of all long runs
    python benchmarks/quality_run.py --work-dir /root/sctd-long3 --results benchmarks/results/quality-long-sctd \\
        --variants full,sctd-phases --seeds 1 --ablations '' --updates 2250 --evals 12
    python benchmarks/quality_run.py --merge benchmarks/results/quality-long-phases \\
        benchmarks/results/quality-long-sctd --results benchmarks/results/quality-long-all
    # smoke: tiny model, a few updates, then the same command again continues and finishes
    python benchmarks/quality_run.py --work-dir /tmp/q --results /tmp/q/quality --books 3 --valid-books 1 \\
        --layers 4 --dim 32 --tokens-per-sample 64 --updates 12 --evals 3 --valid-batches 2 --session-updates 6
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fairseq import options  # noqa: E402
from fairseq.cpu_memory import keep_freed_memory  # noqa: E402
from fairseq.data.bpe import train_bpe  # noqa: E402
from fairseq_cli import bpe, preprocess  # noqa: E402
from fairseq_cli.quickstart.side_by_side import Lane, interleave  # noqa: E402
from quality_results import (committed_records, merge_results, other_records, results_file_runs,  # noqa: E402
                             write_results)
from quality_variants import (BASELINE, LEVERS, NAMED_LISTS, clock, expand, ideal_ratio, levers_of,  # noqa: E402
                              run_updates, train_argv)

SHARED = Path(os.environ.get("FAIRSEQ_SCTD_SHARED", REPO.parent / "shared"))
DEFAULT_CORPUS = SHARED / "data" / "gutenberg_rcdm" / "books"
MAIN = "full,drop-phases,sctd-phases"
ABLATIONS = "drop,sctd,random"  # trained with the first seed only, in the same process as the main runs


# --------------------------------------------------------------------------- data


def prepare_data(a) -> Path:
    """Books -> raw text -> BPE -> data-bin under --work-dir (skipped when data-bin already exists)."""
    work = Path(a.work_dir)
    dest = work / "data-bin"
    if (dest / "dict.txt").is_file():
        return dest
    books = sorted(Path(a.corpus).glob("*.txt"))
    if len(books) < a.books + a.valid_books:
        raise FileNotFoundError(f"--corpus {a.corpus}: need {a.books + a.valid_books} books, found {len(books)}")
    raw = work / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split, files in (("train", books[:a.books]), ("valid", books[a.books:a.books + a.valid_books])):
        with open(raw / f"{split}.txt", "w", encoding="utf-8") as out:
            for i, f in enumerate(files):
                if i:
                    out.write("\n")  # empty line = document boundary
                for line in f.read_text(encoding="utf-8").splitlines():
                    if line.strip():
                        out.write(line.strip() + "\n")
    train_bpe([str(raw / "train.txt")], a.vocab_size, 2, str(work / "bpe"))
    for split in ("train", "valid"):
        bpe.cli_main(["encode", "--tokenizer-json", str(work / "bpe" / "tokenizer.json"), "--inputs",
                      str(raw / f"{split}.txt"), "--outputs", str(raw / f"{split}.bpe"), "--keep-empty"])
    preprocess.cli_main(["--only-source", "--trainpref", str(raw / "train.bpe"), "--validpref",
                         str(raw / "valid.bpe"), "--destdir", str(dest), "--workers", "1"])
    return dest


def known_budget(a, baseline: dict | None) -> float | None:
    """The time budget of the timeclock runs, where it is known: --time-budget-s, the work dir's
    time-budget.json (an earlier session measured it), or a finished baseline run's step time; else None."""
    if a.time_budget_s:
        return a.time_budget_s
    path = Path(a.work_dir) / "time-budget.json"
    if path.is_file():
        return json.loads(path.read_text())["budget_s"]
    if baseline is not None and baseline["finished"]:
        return write_budget(a, baseline["step_seconds_total"], baseline["median_step_s"])
    return None


def write_budget(a, budget: float, median_update_s: float) -> float:
    path = Path(a.work_dir) / "time-budget.json"
    path.write_text(json.dumps({"budget_s": budget, "median_update_s": median_update_s, "updates": a.updates,
                                "measured": time.strftime("%Y-%m-%d %H:%M:%S"), "load": os.getloadavg()[0]},
                               indent=1))
    print(f"time budget of the timeclock runs: {budget:.0f} s ({a.updates} baseline updates at "
          f"{median_update_s:.3f} s, load {os.getloadavg()[0]:.1f}; {path})", flush=True)
    return budget


# --------------------------------------------------------------------------- runs


def study_runs(a) -> list[tuple[str, int]]:
    """(variant, seed) of every run: each variant with every seed, each ablation with the first seed."""
    return [(v, s) for v in a.variants for s in a.seeds] + [(v, a.seeds[0]) for v in a.ablations]


def check_flags_exist(a, variants: list[str]) -> None:
    """A variant whose flags this fairseq-train lacks (yet) is one clear line, before any work."""
    for v in variants:
        argv = train_argv(a, Path("."), v, 1, 100, 1.0 if clock(v) == "time" else None)
        parser = options.get_training_parser()
        options.parse_args_and_arch(parser, argv, parse_known=True)  # adds the task's flags to the parser
        missing = [f for f in parser.parse_known_args(argv)[1] if f.startswith("--")]
        if missing:
            raise ValueError(f"--variants {v}: fairseq-train has no {', '.join(missing)} (yet); choose others")


class Run:
    """One (variant, seed): its lane, its target (updates, or seconds of step time on the time clock), its
    directory and the session it is in."""

    def __init__(self, a, data: Path, variant: str, seed: int, budget_s: float | None = None):
        self.variant, self.seed = variant, seed
        self.name = f"{variant}-s{seed}"
        self.dir = Path(a.work_dir) / "runs" / self.name
        self.target = run_updates(a, variant)  # on the time clock: the updates its other schedules count
        self.budget_s = budget_s if clock(variant) == "time" else None
        self.ideal = ideal_ratio(a, variant, self.target)
        self.argv = train_argv(a, data, variant, seed, self.target,
                               None if self.budget_s is None else self.budget_s / 3600)
        self.evals = a.evals
        self.eval_every = max(1, self.target // a.evals)
        self.save_every = max(1, a.save_every or self.eval_every)
        self.lane = Lane(self.name, self.argv, valid_batches=a.valid_batches)
        self.sessions: list[dict] = []
        ckpt = self.dir / "checkpoint_last.pt"
        if ckpt.is_file():
            self.lane.load(str(ckpt))
            self.sessions = json.loads((self.dir / "sessions.json").read_text())
        else:
            self.lane.validate()  # the initial point (0 s): every curve starts from the same weights
        self.session = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "process": a.process,
                        "from_update": self.lane.num_updates, "to_update": self.lane.num_updates}
        self.session_start_clock = self.lane.clock

    @property
    def trained_s(self) -> float:
        """The training time the time clock reads (the trainer's, as --stop-time-hours does)."""
        return self.lane.trainer.cumulative_training_time()

    @property
    def finished(self) -> bool:
        if self.budget_s is not None:  # the budget, or fairseq-train's --max-update stop when a lever sets it
            max_update = int(getattr(self.lane.args, "max_update", 0) or 0)
            return self.trained_s >= self.budget_s or 0 < max_update <= self.lane.num_updates
        return self.lane.num_updates >= self.target

    def eval_due(self) -> bool:
        """Every --evals-th of the run (of its updates, or of its time budget), and at its end."""
        if self.finished:
            return True
        if self.budget_s is not None:
            return len(self.lane.points) - 1 < int(self.evals * self.trained_s / self.budget_s)
        return self.lane.num_updates % self.eval_every == 0

    def save_due(self) -> bool:
        """Every --save-every updates (default: at every validation); on the time clock at every validation."""
        if self.budget_s is not None:
            return self.lane.points[-1]["updates"] == self.lane.num_updates
        return self.lane.num_updates % self.save_every == 0

    def save(self) -> None:
        self.session["to_update"] = self.lane.num_updates
        self.lane.save(str(self.dir / "checkpoint_last.pt"))
        (self.dir / "sessions.json").write_text(json.dumps(self.sessions + [self.session], indent=1))

    def record(self) -> dict:
        steps = self.lane.step_seconds
        return {"name": self.name, "variant": self.variant, "seed": self.seed, "target_updates": self.target,
                "budget_s": self.budget_s, "updates": self.lane.num_updates, "finished": self.finished,
                "step_seconds_total": self.lane.clock,
                "median_step_s": float(np.median(steps)) if steps else None, "ideal_step_ratio": self.ideal,
                "points": self.lane.points, "sessions": self.sessions + [self.session], "train_argv": self.argv}


def load_record(path: Path) -> dict | None:
    """The record of a run trained in an earlier session (from its checkpoint), or None."""
    return json.loads(path.read_text()) if path.is_file() else None


# --------------------------------------------------------------------------- main


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work-dir", default="runs/quality", help="data-bin/ and runs/<variant>-s<seed>/ (checkpoints)")
    ap.add_argument("--results", default=str(REPO / "benchmarks" / "results" / "quality"),
                    help="PREFIX of the results: PREFIX.json, PREFIX.md, PREFIX.png")
    ap.add_argument("--variants", default=MAIN,
                    help=f"comma-separated: {BASELINE} (the standard recipe) or levers joined by '+' from "
                    f"{','.join(LEVERS)}; or a named list: {','.join(NAMED_LISTS)}")
    ap.add_argument("--seeds", default="1,2", help="comma-separated seeds of --variants")
    ap.add_argument("--ablations", default=ABLATIONS,
                    help="comma-separated variants trained with the first seed only ('' for none)")
    ap.add_argument("--updates", type=int, default=400, help="updates of the full model (others: equal FLOPs)")
    ap.add_argument("--full-phases", default="0.1,0.1",
                    help="W,F: the *-phases variants run the full model for the first W and last F of their updates")
    ap.add_argument("--evals", type=int, default=8, help="validation points per run")
    ap.add_argument("--save-every", type=int, default=0, help="checkpoint every N updates (0: at every validation)")
    ap.add_argument("--session-minutes", type=float, default=0, help="end this session after M minutes (0: no limit)")
    ap.add_argument("--session-updates", type=int, default=0, help="at most N updates per run this session (0: all)")
    ap.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    ap.add_argument("--books", type=int, default=40)
    ap.add_argument("--valid-books", type=int, default=2)
    ap.add_argument("--valid-batches", type=int, default=25)
    ap.add_argument("--vocab-size", type=int, default=8000)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--tokens-per-sample", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=5e-4, help="ELECTRA-Small's lr, unscaled (see the docstring)")
    ap.add_argument("--goal", type=float, default=0.6,
                    help="the goal on the time to the baseline's final loss / its time (tables and plot)")
    ap.add_argument("--time-budget-s", type=float, default=0,
                    help="time budget of the timeclock runs in seconds of step time (0: the work dir's "
                    "time-budget.json, else measured on the baseline's warm-up in this process)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--merge", nargs="+", default=[], metavar="PREFIX",
                    help="train nothing: write --results from the runs of these results files (PREFIX.json), "
                    "e.g. seeds or variants that trained in different sessions")
    ap.add_argument("--retrain", default="", help="comma-separated finished runs (e.g. full-s1) to train again, "
                    "for their checkpoints (GLUE); the new record replaces the committed one, and the valid "
                    "losses of the two are compared")
    a = ap.parse_args(argv)
    try:
        a.variants = expand([v for v in a.variants.split(",") if v])
        a.ablations = [v for v in expand([v for v in a.ablations.split(",") if v]) if v not in a.variants]
        a.seeds = [int(s) for s in a.seeds.split(",") if s]
        a.retrain = [r for r in a.retrain.split(",") if r]
        a.full_phases = [float(x) for x in a.full_phases.split(",")]
    except ValueError as e:
        ap.error(f"--seeds/--full-phases: {e}")
    for v in a.variants + a.ablations:
        try:
            levers_of(v)
        except ValueError as e:
            ap.error(f"--variants/--ablations: {e}")
    if len(a.full_phases) != 2 or not all(0 <= f < 1 for f in a.full_phases) or sum(a.full_phases) >= 1:
        ap.error(f"--full-phases {a.full_phases}: two fractions W,F >= 0 with W + F < 1")
    for name in ("updates", "evals", "valid_batches", "batch_size", "layers", "dim", "threads"):
        if getattr(a, name) < 1:
            ap.error(f"--{name.replace('_', '-')} {getattr(a, name)}: must be >= 1")
    if not a.seeds:
        ap.error("--seeds: give at least one seed")
    names = {f"{v}-s{s}" for v, s in study_runs(a)}
    for r in a.retrain:
        if r not in names:
            ap.error(f"--retrain {r}: not a run of this study; its runs are {', '.join(sorted(names))}")
    try:
        check_flags_exist(a, a.variants + a.ablations)
    except ValueError as e:
        ap.error(str(e))
    return a


def main(argv=None) -> list[dict]:
    a = parse_args(argv)
    if a.merge:
        return merge_results(a)
    a.process = f"{time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()}"  # this session's runs share it
    torch.set_num_threads(a.threads)
    keep_freed_memory()
    data = prepare_data(a)
    names = study_runs(a)
    in_results = results_file_runs(a)
    committed = committed_records(a, in_results)
    others = other_records(in_results, {f"{v}-s{s}" for v, s in names})
    records, runs, pending, by_lane = {}, [], [], {}

    def add(v: str, s: int, budget: float | None = None) -> None:
        run = Run(a, data, v, s, budget)
        target = f"{run.target} updates" if run.budget_s is None else f"{run.budget_s:.0f} s of step time"
        print(f"{run.name}: {'continuing at update ' + str(run.lane.num_updates) if run.lane.num_updates else 'new'}"
              f", target {target}", flush=True)
        runs.append(run)
        by_lane[id(run.lane)] = run
        records[(v, s)] = run.record()

    for v, s in names:
        done = load_record(Path(a.work_dir) / "runs" / f"{v}-s{s}" / "record.json")
        if done is None and f"{v}-s{s}" not in a.retrain:
            done = committed.get(f"{v}-s{s}")
        if done is not None and done["finished"]:
            print(f"{v}-s{s}: finished earlier ({done['updates']} updates), skipped", flush=True)
            records[(v, s)] = done
            continue
        records[(v, s)] = None  # its place in the tables
        if clock(v) == "time":
            pending.append((v, s))  # built once the budget is known
        else:
            add(v, s)
    baseline = next((run for run in runs if run.variant == BASELINE), None)
    if pending:
        budget = known_budget(a, next((r for (v, _), r in records.items() if v == BASELINE and r), None))
        if budget is not None:
            for v, s in pending:
                add(v, s, budget)
            pending.clear()
        elif baseline is None:
            raise SystemExit(f"quality_run: the timeclock runs need the {BASELINE} run in the same command (its "
                             "warm-up is timed for their budget) or --time-budget-s")
    warm_up = max(1, round(0.1 * a.updates))
    lanes = [run.lane for run in runs]
    start = time.perf_counter()

    def session_over() -> bool:
        return a.session_minutes > 0 and time.perf_counter() - start > 60 * a.session_minutes

    def done(lane) -> bool:
        run = by_lane[id(lane)]
        return (run.finished or session_over()
                or (a.session_updates > 0 and lane.num_updates - run.session["from_update"] >= a.session_updates))

    def after_step(lane) -> None:
        run = by_lane[id(lane)]
        n = lane.num_updates
        if pending and run is baseline and n >= warm_up:  # the timeclock runs join, their budget measured
            median = float(np.median(lane.step_seconds))
            budget = write_budget(a, a.updates * median, median)
            for v, s in pending:
                add(v, s, budget)
                lanes.append(runs[-1].lane)  # interleave steps every lane of this list, also one added now
            pending.clear()
        if run.eval_due():
            point = lane.validate()
            print(f"  {run.name}: update {n}/{run.target}  {point['seconds']:.0f} s  valid {point['valid_loss']:.3f}"
                  + (f" (drop fwd {point['valid_loss_drop']:.3f})" if "valid_loss_drop" in point else ""), flush=True)
        if run.save_due() or run.finished or done(lane):
            checkpoint_and_report(run)

    def checkpoint_and_report(run) -> None:
        run.save()
        records[(run.variant, run.seed)] = rec = run.record()
        (run.dir / "record.json").write_text(json.dumps(rec, indent=1))
        write_results(a, [r for r in records.values() if r] + others)

    # the next update goes to the run with the least step time this session: the runs advance together
    interleave(lanes, done=done,
               behind=lambda lane: lane.clock - by_lane[id(lane)].session_start_clock, after_step=after_step)
    for run in runs:
        if run.lane.num_updates > run.session["to_update"] or not (run.dir / "record.json").is_file():
            checkpoint_and_report(run)
    write_results(a, [r for r in records.values() if r] + others)
    for name in a.retrain:
        old, new = committed.get(name), next(r for r in records.values() if r and r["name"] == name)
        if old and new["finished"]:
            diff = max(abs(p["valid_loss"] - q["valid_loss"]) for p, q in zip(old["points"], new["points"]))
            print(f"{name} retrained: valid losses differ from the committed run's by at most {diff:.2e}", flush=True)
    print("\n" + Path(f"{a.results}.md").read_text(), flush=True)
    left = [f"{v}-s{s}" for (v, s), r in records.items() if not (r and r["finished"])]
    print(f"results: {a.results}.md/.json/.png; " + (f"unfinished (rerun to continue): {', '.join(left)}"
                                                     if left else "all runs finished"), flush=True)
    return [r for r in records.values() if r]


if __name__ == "__main__":
    main()
