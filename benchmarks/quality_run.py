"""Quality study: full vs token-dropping schedules vs ScTD, fixed update counts, several seeds, resumable.

Each run = (variant, seed) trains a FIXED number of updates of a small RoBERTa on Project Gutenberg
(../shared/data/gutenberg_rcdm: the first --books books train, the next --valid-books validate). The
runs of one session train side by side (fairseq_cli/quickstart/side_by_side.py): updates interleaved in one process,
each run on its own clock (the sum of its own update wall times), so machine load hits every run alike.
Every --evals-th of a run, the validation MLM loss of the full model (and, for dropping variants, of the
token-dropping forward: the gap diagnostic) is logged on that clock.

Update counts: the full model trains --updates; every other variant trains as many updates as cost the
same ideal FLOPs (fairseq/flops.schedule_ideal_ratio of its exact schedule), so each run has the same
compute and the question "does it reach the full model's final loss sooner?" can be answered.

Blocks: --sample-break-mode none (text packed into full blocks across lines). With "complete", every
line longer than a block is skipped, and Gutenberg's one-paragraph-per-line text lost 9,568 of 30,415
train blocks (31%, the longest paragraphs) that way at T = 128.

Hyperparameters (stability, as the references): Adam (0.9, 0.98), eps 1e-6, weight decay 0.01,
clip-norm 1.0, linear warmup over 10% of the run, polynomial (linear) decay to 0 at the run's end,
dropout 0.1. lr: ELECTRA-Small's published 5e-4 (the closest recipe for a 256-wide encoder; the TF
token-dropping recipe's 1e-4 at batch 512 is for BERT-base/large widths). Not scaled down to batch 16
(sqrt scaling would give 1.77e-4): a study that fits one CPU session has 400 updates, and warmup plus
clipping, not a small step, are what keep it stable. --lr overrides.

Scale: 400 full-model updates, 3 main variants x 2 seeds plus 3 ablations x 1 seed, all interleaved.
Planned as ~8 minutes per run (1.1 s per full update); on 2026-12-02 a full update took ~1.9 s, a run
~13 minutes of step time, and the six main runs alone filled the session (the ablations were stopped).
Finished runs are also read back from the committed results file, so a later session does not retrain them;
--retrain NAME trains one again for its checkpoint (GLUE) and prints how far its losses are from the
committed ones (seed 1 of the main runs, retrained on 2026-12-02: at most 1.8e-5 bits).

Resumable and spread across sessions: OUT (--work-dir) holds data-bin/ and runs/<variant>-s<seed>/
(checkpoint_last.pt: an ordinary fairseq checkpoint, plus the run's clock and points). A rerun skips
finished runs and continues unfinished ones from their checkpoints, bit-identically on CPU;
--session-minutes / --session-updates end a session cleanly (saved). The results (--results PREFIX:
.json, .md and .png) are rewritten after every checkpoint, so they can be committed between sessions.
Step times are comparable between runs that trained in the same session; the table says which did, and
the time ratios and the plot pair a run only with the full run of its own session. A command naming fewer
variants keeps the results file's other runs unchanged.

    # the study (hours of CPU; run it across sessions, the same command each time)
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
import math
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
from fairseq.flops import schedule_ideal_ratio  # noqa: E402
from fairseq_cli.quickstart.side_by_side import Lane, interleave  # noqa: E402
from fairseq.token_drop import sctd_interval  # noqa: E402
from fairseq_cli import bpe, preprocess  # noqa: E402

SHARED = Path(os.environ.get("FAIRSEQ_SCTD_SHARED", REPO.parent / "shared"))
DEFAULT_CORPUS = SHARED / "data" / "gutenberg_rcdm" / "books"
DROP = ["--token-drop", "0.5"]
PHASES = "PHASES"  # placeholder: replaced by the warmup/final full-phase flags of the run's length
VARIANTS = {
    "full": [],
    "drop": DROP + ["--sctd-interval", "0"],
    "drop-phases": DROP + ["--sctd-interval", "0", PHASES],
    "sctd": DROP + ["--sctd-interval", "10", "--sctd-kl-reduction", "reference"],
    "sctd-phases": DROP + ["--sctd-interval", "10", "--sctd-kl-reduction", "reference", PHASES],
    # ablations
    "random": DROP + ["--sctd-interval", "0", "--token-drop-importance", "random"],
    "sctd-mean": DROP + ["--sctd-interval", "10", "--sctd-kl-reduction", "mean"],
}
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


# --------------------------------------------------------------------------- runs


def variant_flags(a, variant: str, updates: int) -> list[str]:
    flags = []
    for flag in VARIANTS[variant]:
        if flag == PHASES:
            warm, final = (round(f * updates) for f in a.full_phases)
            flags += ["--token-drop-warmup-updates", str(warm), "--token-drop-final-full-updates", str(final)]
        else:
            flags.append(flag)
    return flags


def ideal_ratio(a, variant: str, updates: int) -> float:
    args = options.parse_args_and_arch(options.get_training_parser(), train_argv(a, Path("."), variant, 1, updates))
    return schedule_ideal_ratio(a.layers, a.tokens_per_sample, a.dim, 4 * a.dim, float(args.token_drop or 0.0),
                                sctd_interval(args), updates, getattr(args, "token_drop_warmup_updates", 0) or 0,
                                getattr(args, "token_drop_final_full_updates", 0) or 0,
                                full_mlm_weight=float(args.sctd_full_mlm_weight or 0.0))


def run_updates(a, variant: str) -> int:
    """--updates for the full model; for the others, the count whose ideal FLOPs equal the full run's."""
    n = a.updates
    for _ in range(6):  # fixed point: the phases (and so the ratio) depend on the run's length
        n = max(1, round(a.updates / ideal_ratio(a, variant, n)))
    return n


def train_argv(a, data: Path, variant: str, seed: int, updates: int) -> list[str]:
    return [str(data), "--task", "masked_lm", "--criterion", "masked_lm", "--arch", "roberta",
            "--encoder-layers", str(a.layers), "--encoder-embed-dim", str(a.dim),
            "--encoder-ffn-embed-dim", str(4 * a.dim), "--encoder-attention-heads", str(max(1, a.dim // 64)),
            "--tokens-per-sample", str(a.tokens_per_sample), "--sample-break-mode", "none",
            "--skip-invalid-size-inputs-valid-test", "--batch-size", str(a.batch_size),
            "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--adam-eps", "1e-06", "--weight-decay", "0.01",
            "--clip-norm", "1.0", "--lr", repr(a.lr), "--lr-scheduler", "polynomial_decay",
            "--warmup-updates", str(max(1, round(0.1 * updates))), "--total-num-update", str(updates),
            "--dropout", "0.1", "--attention-dropout", "0.1", "--seed", str(seed), "--cpu",
            *variant_flags(a, variant, updates)]


def study_runs(a) -> list[tuple[str, int]]:
    """(variant, seed) of every run: each variant with every seed, each ablation with the first seed."""
    return [(v, s) for v in a.variants for s in a.seeds] + [(v, a.seeds[0]) for v in a.ablations]


def check_flags_exist(a, variants: list[str]) -> None:
    """A variant whose flags this fairseq-train lacks (yet) is one clear line, before any work."""
    for v in variants:
        argv = train_argv(a, Path("."), v, 1, 100)
        parser = options.get_training_parser()
        options.parse_args_and_arch(parser, argv, parse_known=True)  # adds the task's flags to the parser
        missing = [f for f in parser.parse_known_args(argv)[1] if f.startswith("--")]
        if missing:
            raise ValueError(f"--variants {v}: fairseq-train has no {', '.join(missing)} (yet); choose others")


class Run:
    """One (variant, seed): its lane, its target, its directory and the session it is in."""

    def __init__(self, a, data: Path, variant: str, seed: int):
        self.variant, self.seed = variant, seed
        self.name = f"{variant}-s{seed}"
        self.dir = Path(a.work_dir) / "runs" / self.name
        self.target = run_updates(a, variant)
        self.ideal = ideal_ratio(a, variant, self.target)
        self.argv = train_argv(a, data, variant, seed, self.target)
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
    def finished(self) -> bool:
        return self.lane.num_updates >= self.target

    def save(self) -> None:
        self.session["to_update"] = self.lane.num_updates
        self.lane.save(str(self.dir / "checkpoint_last.pt"))
        (self.dir / "sessions.json").write_text(json.dumps(self.sessions + [self.session], indent=1))

    def record(self) -> dict:
        steps = self.lane.step_seconds
        return {"name": self.name, "variant": self.variant, "seed": self.seed, "target_updates": self.target,
                "updates": self.lane.num_updates, "finished": self.finished, "step_seconds_total": self.lane.clock,
                "median_step_s": float(np.median(steps)) if steps else None, "ideal_step_ratio": self.ideal,
                "points": self.lane.points, "sessions": self.sessions + [self.session], "train_argv": self.argv}


def load_record(path: Path) -> dict | None:
    """The record of a run trained in an earlier session (from its checkpoint), or None."""
    return json.loads(path.read_text()) if path.is_file() else None


def results_file_runs(a) -> list[dict]:
    """The run records of the results file (--results PREFIX.json, committed between sessions); [] before
    its first write."""
    path = Path(f"{a.results}.json")
    return json.loads(path.read_text()).get("runs", []) if path.is_file() else []


def committed_records(a, runs: list[dict]) -> dict[str, dict]:
    """The finished runs among the results file's `runs`, by name.

    A session's checkpoints may not outlive it (a fresh machine has none of them); the results file does,
    so a finished run is not trained again. Only runs with this configuration's exact fairseq-train
    arguments count (the data-bin path aside): a change of a study flag trains again."""
    out = {}
    for rec in runs:
        if rec.get("finished") and rec["variant"] in VARIANTS:
            expected = train_argv(a, Path("."), rec["variant"], rec["seed"], rec["target_updates"])
            if rec["train_argv"][1:] == expected[1:] and rec["target_updates"] == run_updates(a, rec["variant"]):
                out[rec["name"]] = rec
    return out


def other_records(runs: list[dict], names: set[str]) -> list[dict]:
    """The results file's records that this command does not train (another variant list, an older
    configuration): written back unchanged, so a command with fewer variants never drops committed runs."""
    return [rec for rec in runs if rec["name"] not in names]


def same_sessions(r: dict, ref: dict) -> bool:
    """Step-time clocks compare only between runs interleaved in the same process(es). Sessions recorded
    before the "process" key: started within 15 minutes of each other (a process starts its runs one after
    another, each after an initial validation; the seed-2 runs of 2026-12-02 started 6 minutes apart)."""
    if len(r["sessions"]) != len(ref["sessions"]):
        return False
    for s, t in zip(r["sessions"], ref["sessions"]):
        if "process" in s and "process" in t:
            if s["process"] != t["process"]:
                return False
        elif abs(time.mktime(time.strptime(s["started"], "%Y-%m-%d %H:%M:%S"))
                 - time.mktime(time.strptime(t["started"], "%Y-%m-%d %H:%M:%S"))) > 15 * 60:
            return False
    return True


def paired_full(r: dict, fulls: list[dict]) -> dict | None:
    """The full run whose clock `r`'s time ratios divide by: same seed, same session(s)."""
    return next((f for f in fulls if f["seed"] == r["seed"] and same_sessions(r, f)), None)


# --------------------------------------------------------------------------- results


def crossing_time(points: list[dict], target: float) -> float | None:
    """First time on the run's clock at which the valid loss reaches `target` (linear between points)."""
    prev = None
    for p in points:
        if p["valid_loss"] <= target:
            if prev is None or prev["valid_loss"] == p["valid_loss"]:
                return p["seconds"]
            f = (prev["valid_loss"] - target) / (prev["valid_loss"] - p["valid_loss"])
            return prev["seconds"] + f * (p["seconds"] - prev["seconds"])
        prev = p
    return None


def summarize(records: list[dict]) -> dict:
    """Per variant, over its finished seeds: medians of final losses and times, and the goal's ratio."""
    out = {}
    done = [r for r in records if r["finished"] and r["points"]]
    full = [r for r in done if r["variant"] == "full"]
    for variant in VARIANTS:
        sessions = [r for r in done if r["variant"] == variant]  # a run retrained in another session: twice
        first = {}
        for r in sessions:
            first.setdefault(r["name"], r)
        rs = list(first.values())  # once per run: its first record
        if not rs:
            continue
        row = {"seeds": len(rs), "final_valid_loss": float(np.median([r["points"][-1]["valid_loss"] for r in rs])),
               "step_seconds": float(np.median([r["step_seconds_total"] for r in rs])),
               "ideal_step_ratio": rs[0]["ideal_step_ratio"]}
        drops = [r["points"][-1]["valid_loss_drop"] for r in rs if "valid_loss_drop" in r["points"][-1]]
        row["final_valid_loss_drop"] = float(np.median(drops)) if drops else None
        ratios = {}
        for r in sessions:  # paired by seed: this seed's time to reach the same seed's full model's final loss
            ref = paired_full(r, full)
            if ref is not None and r["name"] not in ratios:  # a run's first session with its own full run
                t = crossing_time(r["points"], ref["points"][-1]["valid_loss"])
                ratios[r["name"]] = math.inf if t is None else t / ref["step_seconds_total"]
        ratios = list(ratios.values())
        if ratios:  # the goal: <= 0.85 (median over seeds; a seed that never gets there counts as infinite)
            median = float(np.median(ratios))
            row["time_to_full_loss_ratio"] = median if math.isfinite(median) else None
        out[variant] = row
    return out


def markdown(records: list[dict], summary: dict, a) -> str:
    lines = [f"# Quality study ({a.layers} layers x {a.dim}, T={a.tokens_per_sample}, batch {a.batch_size})", "",
             "Validation MLM loss in bits per masked token (full model; 'drop fwd': the token-dropping forward). "
             "Time = the run's own step time: updates of the runs of one session interleaved in one process, each "
             "run's clock the sum of its own update wall times (validation excluded). 'to full's loss' = the "
             "time at which a seed first reaches the final loss of the full model with the same seed, / that full "
             "run's time; median over seeds (goal <= 0.85); '-' where no full run of that seed trained in the "
             "same session (clocks of different sessions do not compare).", "",
             "| variant | seeds done | final valid loss | drop fwd | step time s | ideal FLOP ratio | to full's loss |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for v, row in summary.items():
        drop = f"{row['final_valid_loss_drop']:.3f}" if row["final_valid_loss_drop"] is not None else "-"
        ratio = row.get("time_to_full_loss_ratio", False)  # False: no full run of that seed in its session
        lines.append(f"| {v} | {row['seeds']} | {row['final_valid_loss']:.3f} | {drop} | {row['step_seconds']:.0f} | "
                     f"{row['ideal_step_ratio']:.3f} | {'-' if ratio is False else 'not reached' if ratio is None else f'{ratio:.3f}'} |")
    lines += ["", "| run | updates | step time s | median step s | final valid loss | sessions (updates) |",
              "| --- | --- | --- | --- | --- | --- |"]
    for r in records:
        final = f"{r['points'][-1]['valid_loss']:.3f}" if r["points"] else "-"
        sessions = ", ".join(f"{s['started']} ({s['from_update']}-{s['to_update']})" for s in r["sessions"])
        median = f"{r['median_step_s']:.3f}" if r["median_step_s"] else "-"
        lines.append(f"| {r['name']} | {r['updates']}/{r['target_updates']} | {r['step_seconds_total']:.0f} | "
                     f"{median} | {final} | {sessions} |")
    return "\n".join(lines) + "\n"


def plot(records: list[dict], path: Path, title: str) -> None:
    """Loss vs time as a fraction of the same seed's full run: the seeds' min/max band and every seed.

    Seeds may have trained in different sessions at different machine speeds; dividing by the full run of
    the same seed (same session) puts them on one axis, the one the goal is stated on."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fulls = [r for r in records if r["variant"] == "full" and r["finished"] and r["step_seconds_total"] > 0]

    def full_time(r: dict) -> float | None:
        ref = paired_full(r, fulls)
        return ref["step_seconds_total"] if ref else None

    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    lows = []
    for i, variant in enumerate(VARIANTS):
        rs = [r for r in records if r["variant"] == variant and r["points"] and full_time(r)]
        if not rs:
            continue
        color = f"C{i}"
        curves = [([p["seconds"] / full_time(r) for p in r["points"]], [p["valid_loss"] for p in r["points"]])
                  for r in rs]
        for x, y in curves:
            ax.plot(x, y, color=color, lw=0.8, alpha=0.6)
            lows.append(min(y))
        if len(rs) > 1:
            grid = np.linspace(0.0, min(x[-1] for x, _ in curves), 50)
            ys = np.array([np.interp(grid, x, y) for x, y in curves])
            ax.fill_between(grid, ys.min(0), ys.max(0), color=color, alpha=0.2)
        seeds = len({r["seed"] for r in rs})
        ax.plot([], [], color=color, label=f"{variant} ({seeds} seed{'s' * (seeds > 1)})")
    ax.axvline(0.85, color="gray", ls=":", lw=1)
    ax.set_xlabel("the run's own step time / the full run's (same seed and session; dotted: goal 0.85)")
    ax.set_ylabel("validation MLM loss (bits, full model)")
    if lows:
        ax.set_ylim(min(lows) - 0.05, min(lows) + 1.0)
    fig.suptitle(title, fontsize=10)
    ax.set_title("updates interleaved in one process; band = min/max over seeds", fontsize=8)
    ax.grid(alpha=0.3)
    if lows:
        ax.legend()
    else:  # no finished full run yet: nothing to put on this axis
        ax.text(0.5, 0.5, "no finished full run yet", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_results(a, records: list[dict]) -> None:
    prefix = Path(a.results)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    summary = summarize(records)
    config = {k: v for k, v in vars(a).items() if k not in ("session_minutes", "session_updates", "process")}
    Path(f"{prefix}.json").write_text(json.dumps({"config": config, "summary": summary, "runs": records},
                                                 indent=1))
    Path(f"{prefix}.md").write_text(markdown(records, summary, a))
    plot(records, Path(f"{prefix}.png"), f"{a.layers}x{a.dim}, T={a.tokens_per_sample}, batch {a.batch_size}")


# --------------------------------------------------------------------------- main


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work-dir", default="runs/quality", help="data-bin/ and runs/<variant>-s<seed>/ (checkpoints)")
    ap.add_argument("--results", default=str(REPO / "benchmarks" / "results" / "quality"),
                    help="PREFIX of the results: PREFIX.json, PREFIX.md, PREFIX.png")
    ap.add_argument("--variants", default=MAIN, help=f"comma-separated subset of {','.join(VARIANTS)}")
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
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--merge", nargs="+", default=[], metavar="PREFIX",
                    help="train nothing: write --results from the runs of these results files (PREFIX.json), "
                    "e.g. seeds or variants that trained in different sessions")
    ap.add_argument("--retrain", default="", help="comma-separated finished runs (e.g. full-s1) to train again, "
                    "for their checkpoints (GLUE); the new record replaces the committed one, and the valid "
                    "losses of the two are compared")
    a = ap.parse_args(argv)
    try:
        a.variants = [v for v in a.variants.split(",") if v]
        a.ablations = [v for v in a.ablations.split(",") if v and v not in a.variants]
        a.seeds = [int(s) for s in a.seeds.split(",") if s]
        a.retrain = [r for r in a.retrain.split(",") if r]
        a.full_phases = [float(x) for x in a.full_phases.split(",")]
    except ValueError as e:
        ap.error(f"--seeds/--full-phases: {e}")
    for v in a.variants + a.ablations:
        if v not in VARIANTS:
            ap.error(f"--variants/--ablations: unknown variant {v!r}; choose from: {', '.join(VARIANTS)}")
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


SHAPE = ("layers", "dim", "tokens_per_sample", "batch_size", "books", "valid_books", "vocab_size", "lr")


def merge_results(a) -> list[dict]:
    """--merge: the runs of several results files of one study shape, as one table and plot (--results).

    A run retrained in another session (to pair it with a run of that session) appears once per session in
    the run table; its loss counts once in the medians, and each run's time ratio pairs it with the full
    run of its own session."""
    records, shape = [], None
    for prefix in a.merge:
        path = Path(f"{prefix}.json")
        if not path.is_file():
            raise SystemExit(f"quality_run: --merge {prefix}: {path} not found")
        data = json.loads(path.read_text())
        this = {k: data["config"].get(k) for k in SHAPE}
        if shape is not None and this != shape:
            differ = ", ".join(f"{k} {shape[k]} vs {this[k]}" for k in SHAPE if shape[k] != this[k])
            raise SystemExit(f"quality_run: --merge {prefix}: another study shape than {a.merge[0]} ({differ})")
        shape = this
        records += data["runs"]
    for k, v in shape.items():
        setattr(a, k, v)
    write_results(a, records)
    print(Path(f"{a.results}.md").read_text(), flush=True)
    return records


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
    records, runs = {}, []
    for v, s in names:
        done = load_record(Path(a.work_dir) / "runs" / f"{v}-s{s}" / "record.json")
        if done is None and f"{v}-s{s}" not in a.retrain:
            done = committed.get(f"{v}-s{s}")
        if done is not None and done["finished"]:
            print(f"{v}-s{s}: finished earlier ({done['updates']} updates), skipped", flush=True)
            records[(v, s)] = done
            continue
        run = Run(a, data, v, s)
        print(f"{run.name}: {'continuing at update ' + str(run.lane.num_updates) if run.lane.num_updates else 'new'}"
              f", target {run.target} updates", flush=True)
        runs.append(run)
        records[(v, s)] = run.record()
    start = time.perf_counter()
    by_lane = {id(run.lane): run for run in runs}

    def session_over() -> bool:
        return a.session_minutes > 0 and time.perf_counter() - start > 60 * a.session_minutes

    def done(lane) -> bool:
        run = by_lane[id(lane)]
        return (run.finished or session_over()
                or (a.session_updates > 0 and lane.num_updates - run.session["from_update"] >= a.session_updates))

    def after_step(lane) -> None:
        run = by_lane[id(lane)]
        n = lane.num_updates
        if n % run.eval_every == 0 or run.finished:
            point = lane.validate()
            print(f"  {run.name}: update {n}/{run.target}  {point['seconds']:.0f} s  valid {point['valid_loss']:.3f}"
                  + (f" (drop fwd {point['valid_loss_drop']:.3f})" if "valid_loss_drop" in point else ""), flush=True)
        if n % run.save_every == 0 or run.finished or done(lane):
            checkpoint_and_report(run)

    def checkpoint_and_report(run) -> None:
        run.save()
        records[(run.variant, run.seed)] = rec = run.record()
        (run.dir / "record.json").write_text(json.dumps(rec, indent=1))
        write_results(a, list(records.values()) + others)

    # the next update goes to the run with the least step time this session: the runs advance together
    interleave([run.lane for run in runs], done=done,
               behind=lambda lane: lane.clock - by_lane[id(lane)].session_start_clock, after_step=after_step)
    for run in runs:
        if run.lane.num_updates > run.session["to_update"] or not (run.dir / "record.json").is_file():
            checkpoint_and_report(run)
    write_results(a, list(records.values()) + others)
    for name in a.retrain:
        old, new = committed.get(name), next(r for r in records.values() if r["name"] == name)
        if old and new["finished"]:
            diff = max(abs(p["valid_loss"] - q["valid_loss"]) for p, q in zip(old["points"], new["points"]))
            print(f"{name} retrained: valid losses differ from the committed run's by at most {diff:.2e}", flush=True)
    print("\n" + Path(f"{a.results}.md").read_text(), flush=True)
    left = [r["name"] for r in records.values() if not r["finished"]]
    print(f"results: {a.results}.md/.json/.png; " + (f"unfinished (rerun to continue): {', '.join(left)}"
                                                     if left else "all runs finished"), flush=True)
    return list(records.values())


if __name__ == "__main__":
    main()
