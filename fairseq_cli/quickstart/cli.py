"""fairseq-sctd-quickstart: full training vs token dropping vs ScTD, on CPU, in about ten minutes.

    fairseq-sctd-quickstart --out quickstart-out

Steps: build an English corpus from the standard library's docstrings (no download; or --corpus)
-> train a byte-level BPE (fairseq-bpe) -> encode -> fairseq-preprocess --bpe-dir (the BPE goes into
data-bin) -> warm up (two throwaway updates per variant: the process's first updates are slow, and no
variant's clock pays for them) -> pretrain a narrow 12-layer RoBERTa three ways (full; --token-drop 0.5
without ScTD; --token-drop 0.5 with ScTD) for the same budget of training step time each -> write one
hub-ready folder per variant (checkpoint_last.pt + dict.txt + the BPE), the table (results.md,
results.json, with caveats in words when the comparison rests on too few updates, an implausible
speedup or a busy CPU), then plot validation loss (full model, and the dropping forward's) against
each variant's training step time.

Why equal time and not equal updates: token dropping's claim is that cheaper steps buy more of them in
the same time, so the fair comparison is quality per second. Why side by side (side_by_side.py):
trained one after another, the variants got whatever CPU a shared machine had left at the time (seen:
ScTD 17 updates while full got 215); interleaved update by update in one process, every variant sees the
same load, and each one's time axis is the sum of its own update times. The data steps call the other
CLIs in-process and log their commands; each variant's fairseq-train flags are logged too (fairseq-train
with them trains the same model alone, with its own loop).
"""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import torch
from tqdm import tqdm

from fairseq_cli.quickstart import corpus as quickstart_corpus
from fairseq.cpu_memory import keep_freed_memory
from fairseq_cli.quickstart.results import (MEASURED, MIN_UPDATES, CpuShare, Summary, caveats, format_table,
                                        model_description, plot_curves, summarize)
from fairseq_cli.quickstart.side_by_side import Lane, check_no_loop_flags, interleave
from fairseq_cli import bpe, preprocess

VARIANTS = {
    "full": [],
    "token-drop": ["--token-drop", "0.5", "--sctd-interval", "0"],
    "sctd": ["--token-drop", "0.5", "--sctd-interval", "10"],
}


# --------------------------------------------------------------------------- data preparation


def _say(message: str) -> None:
    print(f"[quickstart] {message}", flush=True)


def _call_cli(entry: Callable[[list[str]], None], argv: list[str], prog: str) -> None:
    """Call another CLI's cli_main(argv) in-process; a non-zero exit becomes a RuntimeError."""
    try:
        entry(argv)
    except SystemExit as exc:
        if exc.code not in (0, None):
            reason = exc.code if isinstance(exc.code, str) else f"{prog} exited with status {exc.code}"
            raise RuntimeError(reason) from None


def _run_cli(entry: Callable[[list[str]], None], argv: list[str], prog: str) -> None:
    """Echo the equivalent shell command, then run it in-process."""
    _say(f"$ {prog} " + " ".join(shlex.quote(a) for a in argv))
    _call_cli(entry, argv, prog)


def prepare_corpus(args, out: Path) -> tuple[Path, Path]:
    """(train.txt, valid.txt): the embedded stdlib corpus, or --corpus (a file or a dir)."""
    corpus_dir = out / "corpus"
    if args.corpus is None:
        stats = quickstart_corpus.write_corpus(corpus_dir, seed=1234, valid_fraction=0.05,
                                               max_bytes=args.max_corpus_bytes, progress=True)
        _say(stats.summary())
        return stats.train_path, stats.valid_path
    src = Path(args.corpus)
    if src.is_dir():
        train, valid = src / "train.txt", src / "valid.txt"
        for path in (train, valid):
            if not path.is_file():
                raise FileNotFoundError(f"--corpus {src}: expected {path.name} in that directory")
        return train, valid
    if not src.is_file():
        raise FileNotFoundError(f"--corpus {src}: no such file or directory")
    stats = quickstart_corpus.split_text_file(src, corpus_dir, seed=1234, valid_fraction=0.05)
    _say(stats.summary())
    return stats.train_path, stats.valid_path


def prepare_data(args, out: Path) -> Path:
    """Corpus -> BPE -> binarized data-bin (re-used when its settings stamp matches)."""
    data_bin = out / "data-bin"
    stamp = {"corpus": str(args.corpus), "vocab_size": args.vocab_size, "bpe_in_data_bin": True,
             "max_corpus_bytes": args.max_corpus_bytes, "python": sys.version.split()[0]}
    stamp_path = data_bin / "quickstart-data.json"
    if stamp_path.is_file() and json.loads(stamp_path.read_text()) == stamp:
        _say(f"re-using {data_bin} (delete it to rebuild)")
        return data_bin
    train_txt, valid_txt = prepare_corpus(args, out)
    bpe_dir = out / "bpe"
    bpe_dir.mkdir(parents=True, exist_ok=True)
    _run_cli(bpe.cli_main, ["train", "--inputs", str(train_txt), "--vocab-size", str(args.vocab_size),
                            "--output-dir", str(bpe_dir)], "fairseq-bpe")
    # --keep-empty: the blank lines between documents stay (as in the fairseq-peer fixtures).
    # One call per file: several --inputs are parallel columns of one corpus.
    for split, text in (("train", train_txt), ("valid", valid_txt)):
        _run_cli(bpe.cli_main, ["encode", "--tokenizer-json", str(bpe_dir / "tokenizer.json"), "--keep-empty",
                                "--inputs", str(text), "--outputs", str(bpe_dir / f"{split}.bpe")],
                 "fairseq-bpe")
    if data_bin.exists():
        shutil.rmtree(data_bin)
    _run_cli(preprocess.cli_main, ["--only-source", "--trainpref", str(bpe_dir / "train.bpe"),
                                   "--validpref", str(bpe_dir / "valid.bpe"), "--destdir", str(data_bin),
                                   "--workers", "1", "--bpe-dir", str(bpe_dir)], "fairseq-preprocess")
    stamp_path.write_text(json.dumps(stamp))
    return data_bin


# --------------------------------------------------------------------------- training, side by side

def train_argv(args, data_bin: Path, variant: str) -> list[str]:
    """fairseq-train flags of one quickstart variant (the loop itself is the quickstart's)."""
    argv = [str(data_bin), "--task", "masked_lm", "--criterion", "masked_lm", "--arch", args.arch,
            "--sample-break-mode", "complete", "--tokens-per-sample", str(args.tokens_per_sample),
            "--skip-invalid-size-inputs-valid-test", "--batch-size", str(args.batch_size),
            "--optimizer", "adam", "--adam-betas", "(0.9,0.98)", "--adam-eps", "1e-06",
            "--weight-decay", "0.01", "--clip-norm", "1.0", "--lr", str(args.lr),
            "--lr-scheduler", "polynomial_decay", "--warmup-updates", str(args.warmup_updates),
            "--total-num-update", "1000000", "--seed", str(args.seed), "--cpu"]
    for name in ("encoder_layers", "encoder_embed_dim", "encoder_ffn_embed_dim", "encoder_attention_heads"):
        value = getattr(args, name)
        if value is not None:
            argv += ["--" + name.replace("_", "-"), str(value)]
    return argv + VARIANTS[variant] + shlex.split(args.extra_train_args or "")


# Updates each variant runs once, in a throwaway copy, before any clock starts: the process's first updates
# pay one-off costs (kernel and allocator set-up, thread pools: seen 6.3 s against a 0.35 s median step) that
# would otherwise be charged to whichever variant runs first. Two, so ScTD's variant runs both of its kinds
# (update 0 is an ScTD update, update 1 a dropping one).
WARM_UP_UPDATES = 2


def warm_up(args, data_bin: Path, variants: list[str]) -> float:
    """WARM_UP_UPDATES updates of a throwaway lane per variant, off every clock; returns their seconds."""
    seconds = 0.0
    for variant in variants:
        lane = Lane(f"warm-up {variant}", train_argv(args, data_bin, variant))
        seconds += sum(lane.step() for _ in range(WARM_UP_UPDATES))
    return seconds


def train_side_by_side(args, data_bin: Path, out: Path, variants: list[str]) -> tuple[list[Lane], CpuShare]:
    """All variants in one process, interleaved on their own step-time clocks, until each has the budget.

    Validation (always the full model) before the first update, each time a variant's clock crosses another
    1/--validation-points of the budget (also every --validate-interval-updates updates, when given) and once
    at its end; then OUT/<variant>/checkpoint_last.pt (an ordinary fairseq checkpoint).
    """
    lanes = []
    for variant in variants:
        argv = train_argv(args, data_bin, variant)
        _say(f"[{variant}] fairseq-train " + " ".join(shlex.quote(a) for a in argv))
        lanes.append(Lane(variant, argv))
        lanes[-1].validate()  # the curves' common start: the same initial weights at 0 s
    warm = warm_up(args, data_bin, variants)
    _say(f"warm-up: {WARM_UP_UPDATES} throwaway updates per variant took {warm:.1f} s, outside the clocks")
    budget_s = args.budget_minutes * 60.0
    every_s = budget_s / args.validation_points
    next_point = {lane.name: every_s for lane in lanes}
    bar = tqdm(total=round(budget_s, 1), desc="train (side by side)", unit="s",
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s step time each {postfix}")

    def after_step(lane: Lane) -> None:
        by_updates = args.validate_interval_updates and lane.num_updates % args.validate_interval_updates == 0
        if lane.clock >= next_point[lane.name] or lane.clock >= budget_s or by_updates:
            lane.validate()
            while next_point[lane.name] <= lane.clock:
                next_point[lane.name] += every_s
        bar.n = round(min(budget_s, min(x.clock for x in lanes)), 1)
        bar.set_postfix_str(" ".join(f"{x.name}={x.num_updates}" for x in lanes), refresh=True)

    cpu0, wall0 = time.process_time(), time.perf_counter()
    try:
        interleave(lanes, done=lambda lane: lane.clock >= budget_s, behind=lambda lane: lane.clock,
                   after_step=after_step)
    finally:
        bar.close()
    cpu = CpuShare(time.process_time() - cpu0, time.perf_counter() - wall0, torch.get_num_threads())
    for lane in lanes:
        lane.save(str(out / lane.name / "checkpoint_last.pt"))
    return lanes, cpu


# --------------------------------------------------------------------------- results


def write_model_folders(data_bin: Path, out: Path, variants: list[str]) -> None:
    """Make OUT/<variant>/ hub-ready: beside checkpoint_last.pt, the dictionary and the BPE, so
    from_pretrained, glue.sh and fairseq-export-hf take the folder as it is."""
    for variant in variants:
        for name in ("dict.txt",) + preprocess.BPE_FILES:
            shutil.copyfile(data_bin / name, out / variant / name)


# --------------------------------------------------------------------------- command line

# The quickstart model: RoBERTa's layout, 12 layers deep but narrow, so that a CPU can train it
# in minutes and the middle layers (where token dropping saves work) dominate the step time.
QUICKSTART_ARCH = {"encoder_layers": 12, "encoder_embed_dim": 128, "encoder_ffn_embed_dim": 512,
                   "encoder_attention_heads": 4}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fairseq-sctd-quickstart", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="quickstart-out",
                   help="output directory: corpus/, bpe/, data-bin/ (binarized, with the BPE), one hub-ready folder "
                        "per variant (checkpoint_last.pt, dict.txt, the BPE), results.md, results.json, "
                        "quickstart.png")
    p.add_argument("--corpus", default=None,
                   help="text file (one paragraph per line, blank line between documents) or a directory "
                        "with train.txt and valid.txt; default: the standard library's docstrings")
    p.add_argument("--max-corpus-bytes", type=int, default=None, help="cap the built corpus size (bytes)")
    p.add_argument("--budget-minutes", type=float, default=2.0,
                   help="training step time per variant (default 2: the whole run takes ~10 min)")
    p.add_argument("--variants", default="full,token-drop,sctd",
                   help=f"comma-separated subset of: {', '.join(VARIANTS)}")
    p.add_argument("--arch", default="roberta_base",
                   help="fairseq architecture; the size flags below override its sizes")
    p.add_argument("--encoder-layers", type=int, default=QUICKSTART_ARCH["encoder_layers"])
    p.add_argument("--encoder-embed-dim", type=int, default=QUICKSTART_ARCH["encoder_embed_dim"])
    p.add_argument("--encoder-ffn-embed-dim", type=int, default=QUICKSTART_ARCH["encoder_ffn_embed_dim"])
    p.add_argument("--encoder-attention-heads", type=int, default=QUICKSTART_ARCH["encoder_attention_heads"])
    p.add_argument("--vocab-size", type=int, default=8000, help="BPE vocabulary size")
    p.add_argument("--tokens-per-sample", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup-updates", type=int, default=50)
    p.add_argument("--validation-points", type=int, default=20,
                   help="validate each variant this many times over its budget (at equal steps of its own "
                        "step time), plus once before the first update")
    p.add_argument("--validate-interval-updates", type=int, default=None,
                   help="also validate every N updates of a variant (default: only --validation-points)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--extra-train-args", default="",
                   help="more fairseq-train model/optimisation flags, as one quoted string (not the loop's: "
                        "--max-update, --save-dir, ... are the quickstart's)")
    return p


def _check_args(args) -> list[str]:
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise ValueError(f"--variants {args.variants!r}: choose from {', '.join(VARIANTS)}")
    if not args.budget_minutes > 0:
        raise ValueError(f"--budget-minutes {args.budget_minutes}: must be > 0")
    check_no_loop_flags(shlex.split(args.extra_train_args or ""), "--extra-train-args")
    for flag in ("vocab_size", "tokens_per_sample", "batch_size", "validate_interval_updates", "lr", "validation_points",
                 "encoder_layers", "encoder_embed_dim", "encoder_ffn_embed_dim", "encoder_attention_heads",
                 "max_corpus_bytes"):
        value = getattr(args, flag)
        if value is not None and not value > 0:
            raise ValueError(f"--{flag.replace('_', '-')} {value}: must be > 0")
    if args.warmup_updates < 0:
        raise ValueError(f"--warmup-updates {args.warmup_updates}: must be >= 0")
    return variants


def run(args) -> list[Summary]:
    """The whole quickstart; returns one Summary per variant (also written to OUT/results.json)."""
    variants = _check_args(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data_bin = prepare_data(args, out)
    keep_freed_memory()  # CPU steps stop page-faulting their activations back in (fairseq/cpu_memory.py)
    lanes, cpu = train_side_by_side(args, data_bin, out, variants)
    write_model_folders(data_bin, out, variants)
    summaries = [summarize(lane) for lane in lanes]
    notes = caveats(summaries, cpu, max(MIN_UPDATES, args.warmup_updates))
    table = format_table(summaries, notes)
    title = (f"{model_description(args)}, T={args.tokens_per_sample}, batch {args.batch_size}, "
             f"{args.budget_minutes:g} min of step time per variant")
    # The results first: a failing plot (a missing or broken matplotlib) must not lose the table.
    (out / "results.md").write_text(f"# {title}\n\n```\n{table}\n```\n")
    (out / "results.json").write_text(json.dumps({
        "title": title, "measured": MEASURED, "caveats": notes, "warm_up_updates_per_variant": WARM_UP_UPDATES,
        "cpu": {"cpu_seconds": cpu.cpu_seconds, "wall_seconds": cpu.wall_seconds, "threads": cpu.threads,
                "share": cpu.share},
        "variants": [s.__dict__ for s in summaries]}, indent=1))
    print("\n" + table, flush=True)
    _say(f"table: {out / 'results.md'}   data: {out / 'results.json'}")
    _say(f"models: {', '.join(str(out / v) for v in variants)} (each: checkpoint_last.pt, dict.txt, the BPE)")
    plot_path = out / "quickstart.png"
    try:
        plot_curves(summaries, plot_path, title, notes)
    except Exception as exc:  # any plotting failure: one line, the results above stay
        raise RuntimeError(f"the plot step failed ({type(exc).__name__}: {exc}); "
                           f"the results are in {out / 'results.md'} and {out / 'results.json'}") from None
    _say(f"plot: {plot_path}")
    return summaries


def cli_main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"fairseq-sctd-quickstart: error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    cli_main()
