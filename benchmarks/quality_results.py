"""The quality study's figure of merit, tables, plot and results files, from run records
(benchmarks/quality_run.py).

Figure of merit: the time a run needs to reach the baseline's final validation loss (full-model
forward), on the run's own step-time clock, divided by the baseline's total step time; the baseline
being the `full` run of the same seed trained in the same process (step-time clocks compare only
there); median over seeds, a seed that never gets there counting as infinite ("not reached").
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from quality_variants import BASELINE, LEVERS, drops, known, run_updates, train_argv


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


def paired_full(r: dict, fulls: List[dict]) -> Optional[dict]:
    """The baseline run whose clock `r`'s time ratios divide by: same seed, same session(s)."""
    return next((f for f in fulls if f["seed"] == r["seed"] and same_sessions(r, f)), None)


def crossing_time(points: List[dict], target: float) -> Optional[float]:
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


def variant_order(records: List[dict]) -> List[str]:
    """Variants in the order their runs appear, the baseline first."""
    seen = [BASELINE] if any(r["variant"] == BASELINE for r in records) else []
    for r in records:
        if r["variant"] not in seen:
            seen.append(r["variant"])
    return seen


def summarize(records: List[dict]) -> Dict[str, dict]:
    """Per variant, over its finished seeds: final losses and times (median and per seed), and the time
    to the baseline's final loss over the baseline's time (median and per seed)."""
    out = {}
    done = [r for r in records if r["finished"] and r["points"]]
    full = [r for r in done if r["variant"] == BASELINE]
    for variant in variant_order(done):
        sessions = [r for r in done if r["variant"] == variant]  # a run retrained in another session: twice
        first: Dict[str, dict] = {}
        for r in sessions:
            first.setdefault(r["name"], r)
        rs = list(first.values())  # once per run: its first record
        row = {"seeds": len(rs), "final_valid_loss": float(np.median([r["points"][-1]["valid_loss"] for r in rs])),
               "seed_final_valid_loss": {str(r["seed"]): r["points"][-1]["valid_loss"] for r in rs},
               "step_seconds": float(np.median([r["step_seconds_total"] for r in rs])),
               "updates": {str(r["seed"]): r["updates"] for r in rs},
               "ideal_step_ratio": rs[0]["ideal_step_ratio"]}
        drop_losses = [r["points"][-1]["valid_loss_drop"] for r in rs if "valid_loss_drop" in r["points"][-1]]
        row["final_valid_loss_drop"] = float(np.median(drop_losses)) if drop_losses else None
        ratios: Dict[str, float] = {}
        run_time: Dict[str, float] = {}
        for r in sessions:  # paired by seed: this seed's time to reach the same seed's baseline's final loss
            ref = paired_full(r, full)
            if ref is not None and r["name"] not in ratios:  # a run's first session with its own baseline
                t = crossing_time(r["points"], ref["points"][-1]["valid_loss"])
                ratios[r["name"]] = math.inf if t is None else t / ref["step_seconds_total"]
                run_time[str(r["seed"])] = r["step_seconds_total"] / ref["step_seconds_total"]
        if ratios:  # median over seeds; a seed that never gets there counts as infinite
            median = float(np.median(list(ratios.values())))
            row["time_to_full_loss_ratio"] = median if math.isfinite(median) else None
            row["seed_time_to_full_loss_ratio"] = {
                str(first[name]["seed"]): (v if math.isfinite(v) else None) for name, v in ratios.items()}
            row["seed_run_time_ratio"] = run_time
        out[variant] = row
    return out


def _per_seed(values: dict, fmt: str) -> str:
    return ", ".join("not reached" if v is None else format(v, fmt) for _, v in sorted(values.items()))


def describe(variant: str) -> str:
    if variant == BASELINE:
        return "the standard RoBERTa recipe on the full model (adam, polynomial_decay)"
    try:
        return "; ".join(LEVERS[n].what for n in variant.split("+"))
    except KeyError:
        return ""


def markdown(records: List[dict], summary: Dict[str, dict], a) -> str:
    lines = [f"# Quality study ({a.layers} layers x {a.dim}, T={a.tokens_per_sample}, batch {a.batch_size})", "",
             "Validation MLM loss in bits per masked token (full-model forward; 'drop fwd': the token-dropping "
             "forward). Time = the run's own step time: updates of the runs of one process interleaved, each run's "
             "clock the sum of its own update wall times (validation excluded). 'to baseline's loss' = the time at "
             f"which a seed first reaches the final loss of the `{BASELINE}` run with the same seed (same process), "
             f"/ that run's time; median over seeds (goal <= {a.goal}; 'not reached' where a seed never gets there); "
             "'-' where no baseline run of that seed trained in the same process (clocks of different processes do "
             "not compare).", "",
             "| variant | seeds | updates | ideal FLOP ratio | final valid loss (median; per seed) | drop fwd | "
             "to baseline's loss (median; per seed) | run time / baseline's (per seed) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for v, row in summary.items():
        drop = f"{row['final_valid_loss_drop']:.3f}" if row["final_valid_loss_drop"] is not None else "-"
        ratio = row.get("time_to_full_loss_ratio", False)  # False: no baseline of that seed in its process
        ratio = "-" if ratio is False else "not reached" if ratio is None else f"**{ratio:.3f}**"
        if "seed_time_to_full_loss_ratio" in row:
            ratio += f" ({_per_seed(row['seed_time_to_full_loss_ratio'], '.3f')})"
        run_time = _per_seed(row.get("seed_run_time_ratio", {}), ".3f") or "-"
        lines.append(f"| {v} | {row['seeds']} | {_per_seed(row['updates'], 'd')} | {row['ideal_step_ratio']:.3f} | "
                     f"{row['final_valid_loss']:.3f} ({_per_seed(row['seed_final_valid_loss'], '.3f')}) | {drop} | "
                     f"{ratio} | {run_time} |")
    lines += ["", "| run | updates | step time s | median step s | final valid loss | sessions (updates) |",
              "| --- | --- | --- | --- | --- | --- |"]
    for r in records:
        final = f"{r['points'][-1]['valid_loss']:.3f}" if r["points"] else "-"
        sessions = ", ".join(f"{s['started']} ({s['from_update']}-{s['to_update']})" for s in r["sessions"])
        median = f"{r['median_step_s']:.3f}" if r["median_step_s"] else "-"
        target = r["target_updates"] if r.get("budget_s") is None else f"{r['budget_s']:.3g} s"
        lines.append(f"| {r['name']} | {r['updates']}/{target} | {r['step_seconds_total']:.0f} | "
                     f"{median} | {final} | {sessions} |")
    lines += ["", "| variant | what it changes |", "| --- | --- |"]
    lines += [f"| {v} | {describe(v)} |" for v in summary]
    return "\n".join(lines) + "\n"


def plot(records: List[dict], path: Path, title: str, goal: float) -> None:
    """Validation loss vs the run's time / its baseline's time (same seed and process), one line per run:
    the full-model variants on the left, the token-dropping ones on the right, the baseline on both."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fulls = [r for r in records if r["variant"] == BASELINE and r["finished"] and r["step_seconds_total"] > 0]

    def full_time(r: dict) -> Optional[float]:
        ref = paired_full(r, fulls)
        return ref["step_seconds_total"] if ref else None

    order = variant_order(records)
    panels = [("full model", [v for v in order if not drops(v)]),
              ("token dropping", [BASELINE] + [v for v in order if drops(v)])]
    panels = [(t, vs) for t, vs in panels if any(v != BASELINE for v in vs)] or panels[:1]
    fig, axes = plt.subplots(1, len(panels), figsize=(7.5 * len(panels), 5.5), dpi=110, squeeze=False)
    cmap = plt.get_cmap("tab20")
    styles = ["-", "--", ":", "-."]
    for ax, (name, variants) in zip(axes[0], panels):
        lows, finals = [], []
        for i, variant in enumerate(variants):
            rs = [r for r in records if r["variant"] == variant and r["points"] and full_time(r)]
            color = "black" if variant == BASELINE else cmap(order.index(variant) % 20)
            for r in rs:
                x = [p["seconds"] / full_time(r) for p in r["points"]]
                y = [p["valid_loss"] for p in r["points"]]
                ax.plot(x, y, color=color, lw=1.4 if variant == BASELINE else 1.0, alpha=0.85,
                        ls=styles[sorted({q['seed'] for q in rs}).index(r["seed"]) % 4])
                lows.append(min(y))
                if variant == BASELINE:
                    finals.append(y[-1])
            if rs:
                ax.plot([], [], color=color, label=f"{variant} ({len({r['seed'] for r in rs})})")
        ax.axvline(goal, color="gray", ls=":", lw=1)
        for f in finals:
            ax.axhline(f, color="black", ls=":", lw=0.6)
        ax.set_xlabel(f"the run's step time / its baseline's (same seed and process; dotted: goal {goal})")
        ax.set_ylabel("validation MLM loss (bits, full-model forward)")
        if lows:
            ax.set_ylim(min(lows) - 0.05, min(lows) + 1.2)
            ax.legend(fontsize=7, ncol=2)
        else:
            ax.text(0.5, 0.5, "no finished baseline run yet", ha="center", transform=ax.transAxes)
        ax.set_title(f"{name}: one line per run (line style = seed); dotted: baseline's final losses", fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# --------------------------------------------------------------------------- results files


def results_file_runs(a) -> list[dict]:
    """The run records of the results file (--results PREFIX.json, committed between sessions); [] before
    its first write."""
    path = Path(f"{a.results}.json")
    return json.loads(path.read_text()).get("runs", []) if path.is_file() else []


def committed_records(a, runs: list[dict]) -> dict[str, dict]:
    """The finished runs among the results file's `runs`, by name.

    A session's checkpoints may not outlive it (a fresh machine has none of them); the results file does,
    so a finished run is not trained again. Only runs with this configuration's exact fairseq-train
    arguments count (the data-bin path aside; a time-clock run's budget is its own): a change of a study
    flag trains again."""
    out = {}
    for rec in runs:
        if rec.get("finished") and known(rec["variant"]):
            budget = rec.get("budget_s")
            expected = train_argv(a, Path("."), rec["variant"], rec["seed"], rec["target_updates"],
                                  None if budget is None else budget / 3600)
            if rec["train_argv"][1:] == expected[1:] and rec["target_updates"] == run_updates(a, rec["variant"]):
                out[rec["name"]] = rec
    return out


def other_records(runs: list[dict], names: set[str]) -> list[dict]:
    """The results file's records that this command does not train (another variant list, an older
    configuration): written back unchanged, so a command with fewer variants never drops committed runs."""
    return [rec for rec in runs if rec["name"] not in names]


def write_results(a, records: list[dict]) -> None:
    prefix = Path(a.results)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    summary = summarize(records)
    config = {k: v for k, v in vars(a).items() if k not in ("session_minutes", "session_updates", "process")}
    Path(f"{prefix}.json").write_text(json.dumps({"config": config, "summary": summary, "runs": records},
                                                 indent=1))
    Path(f"{prefix}.md").write_text(markdown(records, summary, a))
    plot(records, Path(f"{prefix}.png"), f"{a.layers}x{a.dim}, T={a.tokens_per_sample}, batch {a.batch_size}",
         a.goal)


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
