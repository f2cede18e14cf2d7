"""fairseq-sctd-quickstart: full training vs token dropping vs ScTD, on CPU, in about ten minutes.

    fairseq-sctd-quickstart --out quickstart-out

Steps: build an English corpus from the standard library's docstrings (no download; or --corpus)
-> train a byte-level BPE (fairseq-bpe) -> encode -> fairseq-preprocess -> pretrain a narrow
12-layer RoBERTa three ways for the same wall-clock budget each (full; --token-drop 0.5 without
ScTD; --token-drop 0.5 with ScTD) -> print a table and plot validation loss (always the full model)
against training wall-clock time.

Why equal wall-clock and not equal updates: token dropping's claim is that cheaper steps buy more
of them in the same time, so the fair comparison is quality per second. The time axis is training
time (the sum of the logged `train_wall`), which leaves out validation, the same full-model cost for
every variant. Every step calls the other CLIs' entry points in-process with ordinary flags, so each
step can be re-run by hand with the command it logs.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

from fairseq.flops import ideal_step_ratio

VARIANTS = {
    "full": [],
    "token-drop": ["--token-drop", "0.5", "--sctd-interval", "0"],
    "sctd": ["--token-drop", "0.5", "--sctd-interval", "10"],
}
DROP_RATE = 0.5
logger = logging.getLogger("fairseq_cli.quickstart")


# --------------------------------------------------------------------------- data preparation


def _say(message: str) -> None:
    print(f"[quickstart] {message}", flush=True)


def _call_cli(module: str, argv: list[str], prog: str) -> None:
    """Call another CLI's cli_main(argv) in-process; a non-zero exit becomes a RuntimeError."""
    import importlib

    entry = getattr(importlib.import_module(module), "cli_main")
    try:
        entry(argv)
    except SystemExit as exc:
        if exc.code not in (0, None):
            reason = exc.code if isinstance(exc.code, str) else f"{prog} exited with status {exc.code}"
            raise RuntimeError(reason) from None


def _run_cli(module: str, argv: list[str], prog: str) -> None:
    """Echo the equivalent shell command, then run it in-process."""
    _say(f"$ {prog} " + " ".join(shlex.quote(a) for a in argv))
    _call_cli(module, argv, prog)


def prepare_corpus(args, out: Path) -> tuple[Path, Path]:
    """(train.txt, valid.txt): the embedded stdlib corpus, or --corpus (a file or a dir)."""
    from fairseq import quickstart_corpus

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
    stamp = {"corpus": str(args.corpus), "vocab_size": args.vocab_size,
             "max_corpus_bytes": args.max_corpus_bytes, "python": sys.version.split()[0]}
    stamp_path = data_bin / "quickstart-data.json"
    if stamp_path.is_file() and json.loads(stamp_path.read_text()) == stamp:
        _say(f"re-using {data_bin} (delete it to rebuild)")
        return data_bin
    train_txt, valid_txt = prepare_corpus(args, out)
    bpe_dir = out / "bpe"
    bpe_dir.mkdir(parents=True, exist_ok=True)
    _run_cli("fairseq_cli.bpe", ["train", "--inputs", str(train_txt), "--vocab-size", str(args.vocab_size),
                                 "--output-dir", str(bpe_dir)], "fairseq-bpe")
    # --keep-empty: the blank lines between documents stay (as in the fairseq-peer fixtures).
    # One call per file: several --inputs are parallel columns of one corpus.
    for split, text in (("train", train_txt), ("valid", valid_txt)):
        _run_cli("fairseq_cli.bpe", ["encode", "--tokenizer-json", str(bpe_dir / "tokenizer.json"), "--keep-empty",
                                     "--inputs", str(text), "--outputs", str(bpe_dir / f"{split}.bpe")],
                 "fairseq-bpe")
    if data_bin.exists():
        shutil.rmtree(data_bin)
    _run_cli("fairseq_cli.preprocess", ["--only-source", "--trainpref", str(bpe_dir / "train.bpe"),
                                        "--validpref", str(bpe_dir / "valid.bpe"), "--destdir", str(data_bin),
                                        "--workers", "1"], "fairseq-preprocess")
    stamp_path.write_text(json.dumps(stamp))
    return data_bin


# --------------------------------------------------------------------------- training runs


@dataclass
class RunLog:
    """The JSON log records of one training run, split by tag (train_inner, train, valid)."""

    records: list[tuple[str, dict]] = field(default_factory=list)

    def of(self, tag: str) -> list[dict]:
        return [r for t, r in self.records if t == tag]


def parse_json_log_line(line: str) -> tuple[str, dict] | None:
    """`... | INFO | <tag> | {json}` -> (tag, dict); None for any other line."""
    start = line.find("{")
    if start < 0:
        return None
    try:
        record = json.loads(line[start:])
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    head = [part.strip() for part in line[:start].split("|") if part.strip()]
    tag = head[-1] if head else ""
    return tag, record


def read_json_log(path: str | os.PathLike) -> RunLog:
    log = RunLog()
    with open(path, encoding="utf-8") as f:
        for line in f:
            parsed = parse_json_log_line(line)
            if parsed is not None:
                log.records.append(parsed)
    return log


class _ProgressTap(logging.Handler):
    """Drives a tqdm bar (training seconds of the budget) from fairseq-train's train_inner records."""

    def __init__(self, bar: tqdm, budget_s: float):
        super().__init__(logging.INFO)
        self.bar, self.budget_s, self.train_s = bar, budget_s, 0.0

    def emit(self, record: logging.LogRecord) -> None:
        if record.name != "train_inner":
            return
        parsed = parse_json_log_line(record.getMessage())
        if parsed:
            stats = parsed[1]
            self.train_s += _num(stats.get("train_wall"))
            self.bar.n = min(self.budget_s, round(self.train_s, 1))
            self.bar.set_postfix(updates=stats.get("num_updates"), loss=stats.get("loss"), refresh=True)


def train_argv(args, data_bin: Path, save_dir: Path, variant: str) -> list[str]:
    """fairseq-train flags of one quickstart variant."""
    argv = [str(data_bin), "--task", "masked_lm", "--criterion", "masked_lm", "--arch", args.arch,
            "--sample-break-mode", "complete", "--tokens-per-sample", str(args.tokens_per_sample),
            "--skip-invalid-size-inputs-valid-test", "--batch-size", str(args.batch_size),
            "--optimizer", "adam", "--adam-betas", "(0.9,0.98)", "--adam-eps", "1e-06",
            "--weight-decay", "0.01", "--clip-norm", "1.0", "--lr", str(args.lr),
            "--lr-scheduler", "polynomial_decay", "--warmup-updates", str(args.warmup_updates),
            "--total-num-update", "1000000", "--max-update", "1000000", "--max-epoch", "0",
            "--stop-time-hours", repr(args.budget_minutes / 60.0),
            "--validate-interval-updates", str(args.validate_interval_updates),
            "--log-format", "json", "--log-interval", str(args.log_interval), "--seed", str(args.seed),
            "--save-dir", str(save_dir), "--no-epoch-checkpoints", "--cpu"]
    for name in ("encoder_layers", "encoder_embed_dim", "encoder_ffn_embed_dim", "encoder_attention_heads"):
        value = getattr(args, name)
        if value is not None:
            argv += ["--" + name.replace("_", "-"), str(value)]
    return argv + VARIANTS[variant] + shlex.split(args.extra_train_args or "")


def train_variant(args, data_bin: Path, out: Path, variant: str,
                  runner: Callable[[list[str]], None] | None = None) -> RunLog:
    """Run fairseq-train in-process for one variant; return its parsed JSON log."""
    save_dir = out / variant
    if save_dir.exists():
        shutil.rmtree(save_dir)  # a fresh run: never resume a previous quickstart's checkpoint
    save_dir.mkdir(parents=True)
    argv = train_argv(args, data_bin, save_dir, variant)
    _say(f"[{variant}] $ fairseq-train " + " ".join(shlex.quote(a) for a in argv))
    budget_s = args.budget_minutes * 60.0
    bar = tqdm(total=round(budget_s, 1), desc=f"train {variant}", unit="s",
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s train time {postfix}")
    tap = _ProgressTap(bar, budget_s)
    root = logging.getLogger()
    detached = list(root.handlers)  # e.g. a console handler left by an earlier step: restored below
    for handler in detached:
        root.removeHandler(handler)
    root.addHandler(tap)
    log_path = save_dir / "train.log"
    # fairseq-train logs to stdout (as fairseq does); send that to the run's log file so the
    # console shows only the progress bars, and drop that handler afterwards.
    with open(log_path, "w", encoding="utf-8") as log_file:
        try:
            with contextlib.redirect_stdout(log_file):
                (runner or (lambda a: _call_cli("fairseq_cli.train", a, "fairseq-train")))(argv)
        finally:
            root.removeHandler(tap)
            for handler in list(root.handlers):
                if getattr(handler, "stream", None) is log_file:
                    root.removeHandler(handler)
            for handler in detached:
                root.addHandler(handler)
            bar.close()
    return read_json_log(save_dir / "train.log")


# --------------------------------------------------------------------------- results


@dataclass
class Summary:
    variant: str
    updates: int
    train_seconds: float
    tokens_per_s: float
    steps_per_s: float
    final_valid_loss: float
    curve_seconds: list[float]
    curve_loss: list[float]
    ideal_step_ratio: float


def _num(value) -> float:
    return float(value) if value not in (None, "") else float("nan")


def summarize(variant: str, log: RunLog, ideal_step_ratio: float) -> Summary:
    """Updates, throughput and the valid-loss-vs-training-time curve from one run's JSON log.

    Totals come from the end-of-epoch `train` lines (train_step time summed over the epoch, so
    validation is left out and rounding happens once). The curve's time at update u is the running
    sum of `train_wall` over the train_inner lines, interpolated between log points and ending at
    the epoch total.
    """
    updates, seconds = [0.0], [0.0]
    for stats in log.of("train_inner"):
        seconds.append(seconds[-1] + _num(stats.get("train_wall")))
        updates.append(_num(stats.get("num_updates")))
    total_updates, train_s, tokens = 0.0, 0.0, 0.0
    for stats in log.of("train"):
        n = _num(stats.get("train_num_updates"))
        tokens += _num(stats.get("train_wpb")) * (n - total_updates)
        train_s += _num(stats.get("train_train_wall"))
        total_updates = n
    if total_updates == 0:  # no epoch summary: fall back to the train_inner lines
        total_updates, train_s = updates[-1], seconds[-1]
        tokens = sum(_num(r.get("wpb")) * (b - a) for r, a, b in
                     zip(log.of("train_inner"), updates[:-1], updates[1:]))
    if total_updates > updates[-1]:
        updates.append(total_updates)
        seconds.append(max(train_s, seconds[-1]))
    valid = [r for r in log.of("valid") if "valid_loss" in r]
    curve_x = [float(np.interp(_num(r.get("valid_num_updates")), updates, seconds)) for r in valid]
    curve_y = [_num(r["valid_loss"]) for r in valid]
    return Summary(
        variant=variant, updates=int(total_updates), train_seconds=train_s,
        tokens_per_s=tokens / train_s if train_s > 0 else float("nan"),
        steps_per_s=total_updates / train_s if train_s > 0 else float("nan"),
        final_valid_loss=curve_y[-1] if curve_y else float("nan"),
        curve_seconds=curve_x, curve_loss=curve_y, ideal_step_ratio=ideal_step_ratio)


def format_table(summaries: list[Summary]) -> str:
    base = next((s for s in summaries if s.variant == "full"), None)
    header = (f"{'variant':<11} {'updates':>7} {'train s':>8} {'tokens/s':>9} {'steps/s':>8} "
              f"{'speedup':>8} {'ideal':>6} {'final valid loss':>17}")
    lines = [header, "-" * len(header)]
    for s in summaries:
        speedup = s.steps_per_s / base.steps_per_s if base and base.steps_per_s > 0 else float("nan")
        lines.append(f"{s.variant:<11} {s.updates:>7d} {s.train_seconds:>8.1f} {s.tokens_per_s:>9.0f} "
                     f"{s.steps_per_s:>8.3f} {speedup:>7.2f}x {1 / s.ideal_step_ratio:>5.2f}x "
                     f"{s.final_valid_loss:>17.3f}")
    lines.append("speedup = steps/s vs full; ideal = 1 / ideal FLOP ratio of the encoder layers; "
                 "valid loss in bits per masked token, always the full model")
    return "\n".join(lines)


def plot_curves(summaries: list[Summary], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for s in summaries:
        ax.plot(s.curve_seconds, s.curve_loss, marker="o", markersize=3, label=f"{s.variant} ({s.updates} updates)")
    ax.set_xlabel("training wall-clock time (s, validation excluded)")
    ax.set_ylabel("validation MLM loss (bits, full model)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# --------------------------------------------------------------------------- command line

# The quickstart model: RoBERTa's layout, 12 layers deep but narrow, so that a CPU can train it
# in minutes and the middle layers (where token dropping saves work) dominate the step time.
QUICKSTART_ARCH = {"encoder_layers": 12, "encoder_embed_dim": 128, "encoder_ffn_embed_dim": 512,
                   "encoder_attention_heads": 4}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fairseq-sctd-quickstart", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="quickstart-out", help="output directory (data, checkpoints, logs, plot)")
    p.add_argument("--corpus", default=None,
                   help="text file (one paragraph per line, blank line between documents) or a directory "
                        "with train.txt and valid.txt; default: the standard library's docstrings")
    p.add_argument("--max-corpus-bytes", type=int, default=None, help="cap the built corpus size (bytes)")
    p.add_argument("--budget-minutes", type=float, default=2.0,
                   help="training wall-clock budget per variant (default 2: the whole run takes ~10 min)")
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
    p.add_argument("--validate-interval-updates", type=int, default=50)
    p.add_argument("--log-interval", type=int, default=10)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--extra-train-args", default="", help="more fairseq-train flags, as one quoted string")
    return p


def _check_args(args) -> list[str]:
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise ValueError(f"--variants {args.variants!r}: choose from {', '.join(VARIANTS)}")
    if not args.budget_minutes > 0:
        raise ValueError(f"--budget-minutes {args.budget_minutes}: must be > 0")
    for flag in ("vocab_size", "tokens_per_sample", "batch_size", "validate_interval_updates", "log_interval"):
        if getattr(args, flag) <= 0:
            raise ValueError(f"--{flag.replace('_', '-')} {getattr(args, flag)}: must be > 0")
    return variants


def run(args) -> list[Summary]:
    """The whole quickstart; returns one Summary per variant (also written to OUT/results.json)."""
    from fairseq_cli.hydra_train import parse_train_argv
    from fairseq.token_drop import sctd_interval

    variants = _check_args(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data_bin = prepare_data(args, out)
    summaries = []
    for variant in variants:
        log = train_variant(args, data_bin, out, variant)
        resolved = parse_train_argv(train_argv(args, data_bin, out / variant, variant))
        ratio = ideal_step_ratio(resolved.encoder_layers, args.tokens_per_sample, resolved.encoder_embed_dim,
                                 resolved.encoder_ffn_embed_dim, float(resolved.token_drop or 0.0),
                                 sctd_interval(resolved))
        summaries.append(summarize(variant, log, ratio))
        if not summaries[-1].curve_loss:
            raise RuntimeError(f"[{variant}] no validation result in {out / variant / 'train.log'}")
    table = format_table(summaries)
    title = (f"{args.arch} {args.encoder_layers}x{args.encoder_embed_dim}, T={args.tokens_per_sample}, "
             f"batch {args.batch_size}, {args.budget_minutes:g} min/variant")
    # The results first: a failing plot (a missing or broken matplotlib) must not lose the table.
    (out / "results.md").write_text(f"# {title}\n\n```\n{table}\n```\n")
    (out / "results.json").write_text(json.dumps([s.__dict__ for s in summaries], indent=1))
    print("\n" + table, flush=True)
    _say(f"table: {out / 'results.md'}   data: {out / 'results.json'}")
    plot_path = out / "quickstart.png"
    try:
        plot_curves(summaries, plot_path, title)
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
