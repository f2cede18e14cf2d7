"""The quality study's variants: the standard recipe, the levers of issue 28 as table entries, and the
ideal cost of every update, from which each run gets the baseline's compute.

A variant is the baseline (`full`: the standard RoBERTa recipe on the full model, adam + polynomial_decay)
or levers joined by "+" (`cosine`, `seqlen+ramp+drop-phases`). Each lever is one `LEVERS` entry: the
fairseq-train flags it adds for a run of n updates, and the slot it fills. A lever in the `schedule`,
`optimizer` or `drop` slot replaces that part of the recipe (so two levers of one slot do not combine);
the others add flags. One more thing a lever can change: its `clock` ("time": the lr schedule runs on
the time budget, --lr-schedule-clock time, and the run stops when its own step time reaches the budget).

Equal compute: the baseline trains --updates updates; every other run trains the n updates whose ideal
FLOPs (`mean_update_cost`, fairseq/flops.py's encoder multiply-adds of each update as the trainer runs
it: block length, batches per update, dropped layers, ScTD passes, full phases) add up to the
baseline's. Schedules of the levers scale with n (warm-up 10%, switch points, ramps), so a lever is the
same recipe at every length.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from fairseq import flops, options, seq_len_schedule
from fairseq.data.dictionary import placeholder_dictionary
from fairseq.token_drop import TokenDropper
from fairseq.update_freq import update_freq


@dataclass(frozen=True)
class Shape:
    """What a lever's flags depend on: the run's update count n and the study's settings."""

    n: int
    lr: float
    batch_size: int
    tokens_per_sample: int
    budget_hours: Optional[float] = None  # the time budget of a time-clock run
    full_phases: Tuple[float, float] = (0.1, 0.1)  # --full-phases W,F: fractions of the run on the full model

    @property
    def warmup(self) -> int:
        return max(1, round(0.1 * self.n))

    def phase(self, fraction: float) -> int:
        """Updates in a full phase of `fraction` of the run (at least 1 unless the fraction is 0)."""
        return max(1, round(fraction * self.n)) if fraction > 0 else 0


@dataclass(frozen=True)
class Lever:
    what: str  # one line for the results table
    flags: Callable[[Shape], List[str]]
    slot: str = ""  # "schedule" | "optimizer" | "drop": replaces the recipe's part; "": adds flags
    # (a schedule lever sets fairseq's horizon, --max-update n: the study's loop stops there too)
    clock: str = "updates"  # "time": lr on the time budget, the run ends at the budget
    lr_scale: float = 1.0  # the lever's lr is this times --lr


# --------------------------------------------------------------------------- the standard recipe


def polynomial_decay(s: Shape) -> List[str]:
    """RoBERTa's schedule: linear warm-up over 10% of the run, linear decay to 0 at its end."""
    return ["--lr-scheduler", "polynomial_decay", "--warmup-updates", str(s.warmup), "--total-num-update", str(s.n)]


def adam(s: Shape) -> List[str]:
    """RoBERTa's Adam: betas (0.9, 0.98), eps 1e-6 (weight decay 0.01, clip-norm 1.0 and --lr follow it)."""
    return ["--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--adam-eps", "1e-06"]


RECIPE = {"schedule": polynomial_decay, "optimizer": adam, "drop": lambda s: []}


# --------------------------------------------------------------------------- the levers

DROP = ["--token-drop", "0.5"]
SCTD = DROP + ["--sctd-interval", "10", "--sctd-kl-reduction", "reference"]


def phases(s: Shape) -> List[str]:
    """Full model for the first W and last F of the updates (--full-phases; default 10% each, the best Hou
    schedule of the earlier study)."""
    warm, final = s.full_phases
    return ["--token-drop-warmup-updates", str(s.phase(warm)), "--token-drop-final-full-updates", str(s.phase(final))]


def seq_len_warmup(s: Shape) -> List[str]:
    """Composer's sequence-length warm-up in steps: 1/4, 2/4, 3/4 of the length for 10% of the run each."""
    T, steps, at = s.tokens_per_sample, [], 0
    for k in (1, 2, 3):
        at = max(at + 1, round(s.n * k / 10))  # switch points increase even in a tiny run
        steps.append(f"{T * k // 4}:{at}")
    return ["--seq-len-schedule", ",".join(steps)]


def batch_ramp(s: Shape) -> List[str]:
    """Cramming's batch-size ramp: batches of a quarter of --batch-size, 1 to 4 of them per update over
    the first 30% of the run (then the baseline's batch, as 4 micro-batches)."""
    if s.batch_size % 4:
        raise ValueError(f"--batch-size {s.batch_size}: the batch ramp needs a multiple of 4")
    return ["--batch-size", str(s.batch_size // 4), "--batch-size-valid", str(s.batch_size), "--update-freq", "4",
            "--update-freq-ramp-updates", str(round(0.3 * s.n))]  # validation on the baseline's batches


def time_clock(s: Shape) -> List[str]:
    """The schedule's n updates become n ticks of the time budget (its warm-up and decay fit the budget)."""
    return ["--lr-schedule-clock", "time", "--stop-time-hours", repr(s.budget_hours), "--lr-schedule-ticks", str(s.n)]


LEVERS: Dict[str, Lever] = {
    # schedules (fairseq's, in place of polynomial_decay; same warm-up)
    "cosine": Lever("cosine decay to 0 after the warm-up", slot="schedule", flags=lambda s: [
        "--lr-scheduler", "cosine", "--warmup-updates", str(s.warmup), "--min-lr", "0", "--max-update", str(s.n)]),
    "tri-stage": Lever("tri_stage: warm-up 10%, hold 40%, exponential decay to 1% over 50%", slot="schedule",
                       flags=lambda s: ["--lr-scheduler", "tri_stage", "--phase-ratio", "(0.1, 0.4, 0.5)",
                                        "--max-update", str(s.n)]),
    # optimizers (fairseq's, in place of adam)
    "lamb": Lever("LAMB at 10x Adam's lr (NVIDIA's BERT recipe: LAMB 6e-3 where RoBERTa's Adam has 6e-4)",
                  slot="optimizer", lr_scale=10.0, flags=lambda s: ["--optimizer", "lamb", "--lamb-betas",
                                                                    "(0.9, 0.98)", "--lamb-eps", "1e-06"]),
    "adafactor": Lever("Adafactor with the same lr (factored second moments, no momentum: fairseq's defaults)",
                       slot="optimizer", flags=lambda s: ["--optimizer", "adafactor"]),
    # budget levers
    "seqlen": Lever("sequence-length warm-up: T/4, T/2, 3T/4 for 10% of the updates each", flags=seq_len_warmup),
    "ramp": Lever("batch-size ramp: 1/4, 2/4, 3/4 of the batch for 10% of the updates each", flags=batch_ramp),
    "timeclock": Lever("the lr schedule on the time budget (the baseline's time, calibrated), stop at it",
                       flags=time_clock, clock="time"),
    # token dropping (in place of the full model)
    "drop": Lever("token dropping (Hou: learned importance, p 0.5), no full phases", slot="drop",
                  flags=lambda s: DROP + ["--sctd-interval", "0"]),
    "drop-phases": Lever("token dropping (Hou), full model for the first and last 10% (--full-phases)", slot="drop",
                         flags=lambda s: DROP + ["--sctd-interval", "0"] + phases(s)),
    "sctd": Lever("ScTD (Fi 10, reference KL), no full phases", slot="drop", flags=lambda s: list(SCTD)),
    "sctd-phases": Lever("ScTD with the full phases", slot="drop", flags=lambda s: SCTD + phases(s)),
    "random": Lever("token dropping with random importance (Hou's split), no phases", slot="drop",
                    flags=lambda s: DROP + ["--sctd-interval", "0", "--token-drop-importance", "random"]),
    "sctd-mean": Lever("ScTD with the mean KL normalisation", slot="drop",
                       flags=lambda s: DROP + ["--sctd-interval", "10", "--sctd-kl-reduction", "mean"]),
    "random-ltd": Lever("random-LTD: every middle layer its own random half, K growing to T over the run",
                        slot="drop", flags=lambda s: DROP + ["--sctd-interval", "0", "--token-drop-importance",
                                                             "random_ltd", "--token-drop-ramp-updates", str(s.n)]),
}
BASELINE = "full"

# the study's lists (--variants screen): every lever alone, the dropping ones, each lever with Hou. The
# time-clock runs screen in their own short process (screen-timeclock): their budget is timed on the
# baseline's warm-up, which must see the load the rest of the run sees, and a 16-run process takes long.
SCREEN_FULL = ["full", "cosine", "tri-stage", "lamb", "adafactor", "seqlen", "ramp"]
SCREEN_DROP = ["drop-phases", "sctd-phases", "random-ltd"] + [
    f"{v}+drop-phases" for v in SCREEN_FULL[1:]]
SCREEN_TIMECLOCK = ["full", "timeclock", "timeclock+drop-phases"]
# the confirmation: the baseline, the best full-model levers of the screen (one per slot), Hou's dropping
# alone and with them (docs/results.md)
CONFIRM = ["full", "adafactor+seqlen", "drop-phases", "adafactor+seqlen+drop-phases"]
NAMED_LISTS = {"screen": SCREEN_FULL + SCREEN_DROP, "screen-full": SCREEN_FULL, "screen-drop": ["full"] + SCREEN_DROP,
               "screen-timeclock": SCREEN_TIMECLOCK, "confirm": CONFIRM}


def levers_of(variant: str) -> List[Lever]:
    """The levers of a variant name, or a ValueError naming what is wrong."""
    if variant == BASELINE:
        return []
    names = variant.split("+")
    unknown = [n for n in names if n not in LEVERS]
    if unknown:
        raise ValueError(f"unknown variant {variant!r} ({', '.join(map(repr, unknown))}: choose {BASELINE} or "
                         f"levers joined by '+' from {', '.join(LEVERS)})")
    slots = [LEVERS[n].slot for n in names if LEVERS[n].slot]
    twice = sorted({s for s in slots if slots.count(s) > 1})
    if twice:
        raise ValueError(f"variant {variant!r}: two levers replace the {twice[0]} (choose one)")
    if len(set(names)) != len(names):
        raise ValueError(f"variant {variant!r}: a lever named twice")
    return [LEVERS[n] for n in names]


def known(variant: str) -> bool:
    """Whether `variant` names the baseline or a valid combination of this table's levers."""
    try:
        levers_of(variant)
    except ValueError:
        return False
    return True


def expand(names: List[str]) -> List[str]:
    """--variants entries with the named lists (screen, ...) expanded, in order, without repeats."""
    out: List[str] = []
    for name in names:
        for v in NAMED_LISTS.get(name, [name]):
            if v not in out:
                out.append(v)
    return out


def clock(variant: str) -> str:
    return "time" if any(lv.clock == "time" for lv in levers_of(variant)) else "updates"


def drops(variant: str) -> bool:
    return any(lv.slot == "drop" for lv in levers_of(variant))


def train_argv(a, data: Path, variant: str, seed: int, updates: int, budget_hours: Optional[float] = None) -> List[str]:
    """fairseq-train's flags of one run: the study's model and data, the recipe with the variant's levers
    in place (optimizer, lr, schedule, dropping), then the levers that add flags. The baseline's and the
    dropping variants' flags are the earlier study's, in its order (its committed runs still count)."""
    levers = levers_of(variant)
    s = Shape(updates, a.lr, a.batch_size, a.tokens_per_sample, budget_hours, tuple(a.full_phases))
    parts = dict(RECIPE)
    lr = a.lr
    for lv in levers:
        if lv.slot:
            parts[lv.slot] = lv.flags
        lr *= lv.lr_scale
    added = [f for lv in levers if not lv.slot for f in lv.flags(s)]
    batch = [] if "--batch-size" in added else ["--batch-size", str(a.batch_size)]  # the ramp sets its own
    return [str(data), "--task", "masked_lm", "--criterion", "masked_lm", "--arch", "roberta",
            "--encoder-layers", str(a.layers), "--encoder-embed-dim", str(a.dim),
            "--encoder-ffn-embed-dim", str(4 * a.dim), "--encoder-attention-heads", str(max(1, a.dim // 64)),
            "--tokens-per-sample", str(a.tokens_per_sample), "--sample-break-mode", "none",
            "--skip-invalid-size-inputs-valid-test", *batch, *parts["optimizer"](s), "--weight-decay", "0.01",
            "--clip-norm", "1.0", "--lr", repr(lr), *parts["schedule"](s), "--dropout", "0.1",
            "--attention-dropout", "0.1", "--seed", str(seed), "--cpu", *parts["drop"](s), *added]


# --------------------------------------------------------------------------- equal compute


def mean_update_cost(args: argparse.Namespace, updates: int) -> float:
    """Mean ideal cost of updates u = 0 .. updates-1 relative to one baseline update (the full model on
    --batch-size blocks of --tokens-per-sample tokens, one batch per update, `args.base_batch_size`).

    Per update, as the trainer runs it: the block length of --seq-len-schedule, the batches of
    --update-freq (and its ramp), and the model's cost on that length (fairseq.flops, encoder layers):
    full in the full phases; Hou's split, plus ScTD's full pass on its updates; or random-LTD's kept count
    in every middle layer. The rules are the trainer's own (TokenDropper, update_freq, seq_len_schedule).
    """
    L, E, F = int(args.encoder_layers), int(args.encoder_embed_dim), int(args.encoder_ffn_embed_dim)
    T_full = int(args.tokens_per_sample)
    p = float(getattr(args, "token_drop", 0.0) or 0.0)
    dropper = TokenDropper(args, placeholder_dictionary(8), L) if p > 0 else None
    lengths = seq_len_schedule.from_args(args)

    def full(T: int) -> float:
        return L * flops.encoder_layer_macs(T, T, E, F)

    base = full(T_full) * args.base_batch_size
    total = 0.0
    for u in range(updates):
        T = lengths.length_at(u) if lengths is not None else T_full
        if dropper is None or dropper.is_full_update(u):
            ratio = 1.0
        elif dropper.selector.per_layer:
            start, end = dropper.split
            ratio = flops.layerwise_drop_step_ratio(L, T, E, F, dropper.keep_count(T, u), start, end)
        else:
            ratio = flops.token_drop_step_ratio(L, T, E, F, p, dropper.split)
            if dropper.is_sctd_update(u):
                ratio += flops.sctd_full_pass_ratio(L, T, E, F, dropper.full_mlm_weight)
        total += update_freq(args, 1, u) * int(args.batch_size) * full(T) * ratio
    return total / (updates * base)


def parsed(argv: List[str], base_batch_size: int) -> argparse.Namespace:
    args = options.parse_args_and_arch(options.get_training_parser(), argv)
    args.base_batch_size = base_batch_size
    return args


def ideal_ratio(a, variant: str, updates: int) -> float:
    """Mean ideal cost of an update of `variant` over a run of `updates`, relative to a baseline update."""
    budget = 1.0 if clock(variant) == "time" else None  # the budget does not change the ideal FLOPs
    return mean_update_cost(parsed(train_argv(a, Path("."), variant, 1, updates, budget), a.batch_size), updates)


def run_updates(a, variant: str) -> int:
    """--updates for the baseline; for the others, the count whose ideal FLOPs equal the baseline's."""
    n = a.updates
    for _ in range(6):  # fixed point: the schedules (and so the ratio) scale with the run's length
        n = max(1, round(a.updates / ideal_ratio(a, variant, n)))
    return n
