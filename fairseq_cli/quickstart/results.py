"""The quickstart's results: per-variant summaries, the caveats, the table, the model's name and the plot.

Why a module of its own: the numbers must not mislead a newcomer, so what the table and the plot say
(and when they say "do not trust this": too few updates, a speedup beyond its FLOP ideal, a busy CPU)
is one concern, apart from running the lanes (cli.py).
"""
from __future__ import annotations

import argparse
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from fairseq import models
from fairseq.flops import ideal_step_ratio
from fairseq_cli.quickstart.side_by_side import Lane
from fairseq.token_drop import sctd_interval

# How the time axis was measured: said under the table, in results.md and in the plot's subtitle.
MEASURED = ("measured side by side: the variants' updates interleaved in one process, the next update always "
            "going to the variant with the least step time so far; each variant's time is the sum of its own "
            "update wall times (validation excluded) and it trains until that sum reaches the budget")


@dataclass
class CpuShare:
    """CPU time the process got while the lanes trained, against what its threads could have used."""

    cpu_seconds: float
    wall_seconds: float
    threads: int

    @property
    def share(self) -> float:
        return self.cpu_seconds / max(1e-9, self.wall_seconds * self.threads)


@dataclass
class Summary:
    variant: str
    updates: int
    train_seconds: float
    tokens_per_s: float
    steps_per_s: float
    median_step_s: float
    final_valid_loss: float
    final_valid_loss_drop: float | None
    curve_seconds: list[float]
    curve_loss: list[float]
    curve_loss_drop: list[float] | None
    ideal_step_ratio: float
    train_argv: list[str]


def summarize(lane: Lane) -> Summary:
    """A lane's totals, its full-model valid-loss curve on its own clock, and the ideal FLOP ratio."""
    a = lane.args
    ideal = ideal_step_ratio(a.encoder_layers, a.tokens_per_sample, a.encoder_embed_dim, a.encoder_ffn_embed_dim,
                             float(a.token_drop or 0.0), sctd_interval(a), float(a.sctd_full_mlm_weight or 0.0))
    last = lane.points[-1]
    drop = [p["valid_loss_drop"] for p in lane.points] if "valid_loss_drop" in last else None
    return Summary(
        variant=lane.name, updates=lane.num_updates, train_seconds=lane.clock,
        tokens_per_s=lane.tokens / lane.clock, steps_per_s=lane.num_updates / lane.clock,
        median_step_s=float(np.median(lane.step_seconds)), final_valid_loss=last["valid_loss"],
        final_valid_loss_drop=last.get("valid_loss_drop"),
        curve_seconds=[p["seconds"] for p in lane.points], curve_loss=[p["valid_loss"] for p in lane.points],
        curve_loss_drop=drop, ideal_step_ratio=ideal, train_argv=lane.argv)


# When the numbers are not to be trusted, results.md, the printed table and the plot say so in words.
# Too few updates: fewer than this (or than the lr warm-up, if longer), the step times still carry one-off
# costs and the losses are still in the learning-rate ramp, where the variants barely differ yet.
MIN_UPDATES = 50
# A speedup this far above its FLOP ideal is not token dropping's doing (noise, load, too few updates).
MAX_SPEEDUP_OVER_IDEAL = 1.5
# Below this share of the CPU its threads could use, the machine was busy: step times are noisy.
MIN_CPU_SHARE = 0.5


def speedup(s: Summary, summaries: list[Summary]) -> float | None:
    base = next((x for x in summaries if x.variant == "full"), None)
    return s.steps_per_s / base.steps_per_s if base is not None else None


def caveats(summaries: list[Summary], cpu: CpuShare, min_updates: int) -> list[str]:
    """Plain-words warnings for a comparison that rests on too little (see the thresholds above)."""
    notes = []
    few = [s for s in summaries if s.updates < min_updates]
    if few:
        notes.append("too few updates to compare: " + ", ".join(f"{s.variant} {s.updates}" for s in few)
                     + f" (under {min_updates}); speedups and losses this early are mostly noise and "
                       "learning-rate warm-up: run a longer --budget-minutes")
    for s in summaries:
        x = speedup(s, summaries)
        if x is not None and x > MAX_SPEEDUP_OVER_IDEAL / s.ideal_step_ratio:
            notes.append(f"{s.variant}'s speedup {x:.2f}x is beyond {MAX_SPEEDUP_OVER_IDEAL}x its ideal "
                         f"{1 / s.ideal_step_ratio:.2f}x: not a real speedup (noise or load), do not quote it")
        elif x is not None and x < 1.0 and s.ideal_step_ratio < 1.0:
            notes.append(f"{s.variant} ran at {x:.2f}x the full model's steps/s: slower, where its ideal is "
                         f"{1 / s.ideal_step_ratio:.2f}x faster. Its steps do less work, so the time went elsewhere "
                         "(load that hit its steps harder, one-off costs in too few updates): not a measurement of "
                         "token dropping, and its losses at equal time compare it with fewer updates than it would "
                         "get; do not quote it, rerun on a quiet machine with a longer --budget-minutes")
    if cpu.share < MIN_CPU_SHARE:
        notes.append(f"the machine was busy: this process got {100 * cpu.share:.0f}% of the CPU its "
                     f"{cpu.threads} thread(s) could use ({cpu.cpu_seconds:.0f} s CPU in {cpu.wall_seconds:.0f} s "
                     "wall), so step times are noisy; rerun on a quieter machine")
    return notes


def format_table(summaries: list[Summary], notes: Sequence[str] = ()) -> str:
    header = (f"{'variant':<11} {'updates':>7} {'train s':>8} {'tokens/s':>9} {'steps/s':>8} "
              f"{'speedup':>8} {'ideal':>6} {'final valid loss':>17} {'(drop fwd)':>10}")
    lines = [header, "-" * len(header)]
    for s in summaries:
        x = speedup(s, summaries)
        drop = f"{s.final_valid_loss_drop:>10.3f}" if s.final_valid_loss_drop is not None else f"{'-':>10}"
        lines.append(f"{s.variant:<11} {s.updates:>7d} {s.train_seconds:>8.1f} {s.tokens_per_s:>9.0f} "
                     f"{s.steps_per_s:>8.3f} {x if x is not None else float('nan'):>7.2f}x "
                     f"{1 / s.ideal_step_ratio:>5.2f}x {s.final_valid_loss:>17.3f} {drop}")
    lines.append("speedup = steps/s vs full; ideal = 1 / ideal FLOP ratio of the encoder layers; valid loss in "
                 "bits per masked token of the full model ((drop fwd): the token-dropping forward's)")
    lines.append(MEASURED)
    lines += [f"CAVEAT: {note}" for note in notes]
    return "\n".join(lines)


def model_description(args) -> str:
    """What the model is, in words: its shape, and how it relates to the --arch it was derived from."""
    reference = models.get_arch(args.arch)(argparse.Namespace())
    shape = (args.encoder_layers, args.encoder_embed_dim, args.encoder_ffn_embed_dim, args.encoder_attention_heads)
    ref = (reference.encoder_layers, reference.encoder_embed_dim, reference.encoder_ffn_embed_dim,
           reference.encoder_attention_heads)
    words = f"{shape[0]} layers x {shape[1]} wide RoBERTa (FFN {shape[2]}, {shape[3]} heads"
    if shape == ref:
        return words + f": {args.arch})"
    return words + f"; {args.arch}'s layout, {'scaled down' if shape[1] <= ref[1] else 'resized'})"


MIN_ZOOM_BITS = 0.2  # the zoom never spans less: differences of a few thousandths of a bit are not differences
# The zoom starts at the first of these fractions of the run after which the curves span at most ZOOM_SHARE of
# the whole run's range: a long run gets its last two thirds; a short one, still falling steeply, its end.
ZOOM_STARTS = (1 / 3, 1 / 2, 2 / 3, 3 / 4, 5 / 6, 0.9)
ZOOM_SHARE = 0.35


def _values_from(summaries: list[Summary], start_s: float) -> list[float]:
    """Every validation value (full and dropping forward) at or after `start_s`."""
    values = []
    for s in summaries:
        for curve in (s.curve_loss, s.curve_loss_drop or []):
            values += [v for t, v in zip(s.curve_seconds, curve) if t >= start_s]
    return values


def _zoom_start(summaries: list[Summary]) -> float:
    """Where the zoom panel starts (seconds): see ZOOM_STARTS; never after a variant's last point, so that
    every variant's end is in the zoom (a starved run's single updates end far apart)."""
    end = max(s.curve_seconds[-1] for s in summaries)
    first_end = min(s.curve_seconds[-1] for s in summaries)
    whole = _values_from(summaries, 0.0)
    span = max(whole) - min(whole)
    start = min(ZOOM_STARTS[0] * end, first_end)
    for fraction in ZOOM_STARTS:
        if fraction * end > first_end:
            break
        start = fraction * end
        values = _values_from(summaries, start)
        if max(values) - min(values) <= ZOOM_SHARE * span:
            break
    return start


def _whole_range(summaries: list[Summary]) -> tuple[float, float]:
    """The whole-run panel's y-range: every value, at least MIN_ZOOM_BITS wide (a run of one or two updates
    moves by thousandths of a bit or less; magnified, that noise would look like a difference)."""
    values = _values_from(summaries, 0.0)
    low, high = min(values), max(values)
    pad = max(0.08 * (high - low), (MIN_ZOOM_BITS - (high - low)) / 2)
    return low - pad, high + pad


def _zoom_range(summaries: list[Summary], start_s: float) -> tuple[float, float] | None:
    """The y-range of every curve (full and dropping forward) from `start_s` on: where the variants differ,
    without the ~13-bit start squeezing it; at least MIN_ZOOM_BITS wide, as the whole-run panel (_whole_range),
    so it is never wider than that panel."""
    values = _values_from(summaries, start_s)
    if not values:
        return None
    low, high = min(values), max(values)
    pad = max(0.08 * (high - low), (MIN_ZOOM_BITS - (high - low)) / 2)
    return low - pad, high + pad


def plot_curves(summaries: list[Summary], path: Path, title: str, notes: Sequence[str] = ()) -> None:
    """Two panels: the whole run, and a zoom on its end (_zoom_start) with a y-range that fits the curves
    there. Solid: validation loss of the full model; dashed with x marks: the token-dropping forward's (what
    training optimises), thick and on top of a thin solid, so that where the two lie on each other (a short run)
    both show: the dashes, and the solid in their gaps. Caveats are printed under the panels in words."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wrapped = [textwrap.fill("CAVEAT: " + n, 200) for n in notes]
    note_lines = sum(w.count("\n") + 1 for w in wrapped)
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2 + 0.17 * note_lines), dpi=110)
    end = max(s.curve_seconds[-1] for s in summaries)
    for ax in axes:
        for i, s in enumerate(summaries):
            color = f"C{i}"
            x = speedup(s, summaries)
            label = f"{s.variant}: {s.updates} updates" + (f", {x:.2f}x steps/s" if x is not None else "")
            ax.plot(s.curve_seconds, s.curve_loss, marker="o", markersize=3, linewidth=1.0, color=color, alpha=0.7,
                    label=label)
            if s.curve_loss_drop is not None:
                ax.plot(s.curve_seconds, s.curve_loss_drop, linestyle=(0, (4, 2)), marker="x", markersize=6,
                        linewidth=2.4, color=color, zorder=3, label=f"{s.variant}: token-dropping forward")
        ax.set_xlabel("the variant's own training step time (s, validation excluded)")
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.grid(alpha=0.3)
    axes[0].set_ylim(*_whole_range(summaries))
    axes[0].set_ylabel("validation MLM loss (bits per masked token)")
    axes[0].set_title("whole run (solid: full model; dashed: dropping forward)", fontsize=9)
    start = _zoom_start(summaries)
    zoom = _zoom_range(summaries, start)
    axes[1].set_xlim(start - 0.02 * end, end * 1.02)
    if zoom is not None:
        axes[1].set_ylim(*zoom)
    axes[1].set_title(f"zoom: from {start:.0f} s on ({100 * (1 - start / end):.0f}% of the run), where the variants "
                      "differ", fontsize=9)
    axes[1].legend(fontsize=8)
    fig.suptitle(title + "\nupdates interleaved in one process; each variant on its own step-time clock",
                 fontsize=10)
    bottom = 0.0
    if wrapped:
        fig.text(0.01, 0.01, "\n".join(wrapped), fontsize=8, color="darkred", va="bottom", ha="left")
        bottom = (0.02 * 110 + 0.17 * note_lines * 110) / fig.dpi / fig.get_figheight()
    fig.tight_layout(rect=(0, bottom, 1, 1))
    fig.savefig(path)
    plt.close(fig)
