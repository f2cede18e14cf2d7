"""Equal wall-clock pretraining: full model vs token dropping vs ScTD, validation MLM loss over time.

SPEC section 5 ("quality at CPU scale"): each mode trains a small RoBERTa on a Gutenberg subset for the
same --budget-minutes of *training* time (evaluation pauses the clock), and at --evals evenly spaced
moments its validation masked-LM loss is measured with the full model (validation never drops tokens).
The validation set, its masking and the initial weights are identical for every mode.

    python benchmarks/quality_run.py --budget-minutes 20                  # full, drop, sctd; 20 min each
    python benchmarks/quality_run.py --budget-minutes 0.3 --books 3 --valid-books 1 --valid-batches 4 \
        --layers 4 --dim 64 --evals 2                                     # smoke run

Data (cached in --work-dir): the first --books books of ../shared/data/gutenberg_rcdm (one document
per book, one paragraph per line) for training and the next --valid-books for validation; a byte-level
BPE (--vocab-size) trained on the training text; fairseq-preprocess output in <work-dir>/data-bin.
Machine noise shifts the numbers (modes run one after another); report them with that caveat.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import torch

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "gutenberg_rcdm" / "books"
MODES = {
    "full": [],
    "drop": ["--token-drop", "0.5", "--sctd-interval", "0"],
    "sctd": ["--token-drop", "0.5", "--sctd-interval", "10"],
    "random": ["--token-drop", "0.5", "--sctd-interval", "0", "--token-drop-importance", "random"],
}


# --------------------------------------------------------------------------- data


def prepare_data(a) -> Path:
    """Raw text -> BPE -> data-bin under a.work_dir (skipped when data-bin already exists)."""
    work = Path(a.work_dir)
    dest = work / "data-bin"
    if (dest / "dict.txt").is_file():
        return dest
    corpus = Path(a.corpus)
    books = sorted(corpus.glob("*.txt"))
    if len(books) < a.books + a.valid_books:
        raise FileNotFoundError(f"--corpus {corpus}: need {a.books + a.valid_books} books, found {len(books)}")
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
    from fairseq.data.bpe import train_bpe
    from fairseq_cli import bpe, preprocess
    train_bpe([str(raw / "train.txt")], a.vocab_size, 2, str(work / "bpe"))
    for split in ("train", "valid"):
        bpe.cli_main(["encode", "--tokenizer-json", str(work / "bpe" / "tokenizer.json"), "--inputs",
                      str(raw / f"{split}.txt"), "--outputs", str(raw / f"{split}.bpe"), "--keep-empty"])
    preprocess.cli_main(["--only-source", "--trainpref", str(raw / "train.bpe"), "--validpref",
                         str(raw / "valid.bpe"), "--destdir", str(dest), "--workers", "1"])
    return dest


# --------------------------------------------------------------------------- training


def train_args(a, data: Path, mode: str):
    from fairseq import options
    argv = [str(data), "--task", "masked_lm", "--criterion", "masked_lm", "--arch", "roberta",
            "--encoder-layers", str(a.layers), "--encoder-embed-dim", str(a.dim),
            "--encoder-ffn-embed-dim", str(4 * a.dim), "--encoder-attention-heads", str(max(1, a.dim // 64)),
            "--tokens-per-sample", str(a.tokens_per_sample), "--sample-break-mode", "complete",
            "--batch-size", str(a.batch_size), "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)",
            "--adam-eps", "1e-06", "--weight-decay", "0.01", "--clip-norm", "0.0", "--lr", str(a.lr),
            "--lr-scheduler", "polynomial_decay", "--warmup-updates", str(a.warmup),
            "--total-num-update", "1000000", "--dropout", "0.1", "--attention-dropout", "0.1",
            "--seed", str(a.seed), "--cpu", "--log-format", "none", "--no-save",
            *MODES[mode]]
    return options.parse_args_and_arch(options.get_training_parser(), argv)


def validation_loss(trainer, task, args, max_batches: int) -> float:
    """Full-model masked-LM loss in bits per masked token over max_batches valid batches.

    Batches come length-sorted, so we take evenly spaced ones (every len/max_batches-th) to cover all
    lengths; the choice and the masking are the same for every mode and every evaluation.
    """
    from fairseq_cli.train import max_positions
    epoch_itr = task.get_batch_iterator(dataset=task.dataset("valid"), max_tokens=None,
                                        max_sentences=args.batch_size,
                                        max_positions=max_positions(task, trainer.model), ignore_invalid_inputs=True,
                                        seed=args.seed, epoch=1, split_name="valid")
    stride = max(1, len(epoch_itr) // max(1, max_batches))
    loss = size = 0.0
    for i, sample in enumerate(epoch_itr.next_epoch_itr(shuffle=False)):
        if i % stride:
            continue
        log = trainer.valid_step(sample)
        if log is not None:
            loss += float(log["loss"])
            size += float(log["sample_size"])
    return loss / max(size, 1.0) / math.log(2)


def run_mode(a, data: Path, mode: str):
    """Train one mode for the budget; returns [(train_seconds, updates, valid_loss_bits)] and tokens/s."""
    from fairseq import tasks
    from fairseq.trainer import Trainer
    from fairseq_cli.train import set_seeds, train_iterator

    args = train_args(a, data, mode)
    set_seeds(args.seed)
    task = tasks.setup_task(args)
    task.load_dataset("valid", epoch=1)
    task.load_dataset("train", epoch=1)
    model = task.build_model(args)
    trainer = Trainer(args, task, model, task.build_criterion(args))
    budget = a.budget_minutes * 60.0
    marks = [budget * (i + 1) / a.evals for i in range(a.evals)]
    curve = [(0.0, 0, validation_loss(trainer, task, args, a.valid_batches))]
    clock, tokens, epoch = 0.0, 0, 1
    while marks:
        itr = train_iterator(args, task, trainer, epoch).next_epoch_itr(shuffle=True)
        for sample in itr:
            t0 = time.perf_counter()
            trainer.train_step([sample])
            clock += time.perf_counter() - t0
            tokens += int(sample.get("ntokens", 0)) if sample else 0
            if clock >= marks[0]:
                marks.pop(0)
                curve.append((clock, trainer.num_updates, validation_loss(trainer, task, args, a.valid_batches)))
                print(f"  {mode:>6}: {clock:7.1f}s  {trainer.num_updates:6d} updates  "
                      f"valid {curve[-1][2]:.4f} bits", flush=True)
                if not marks:
                    break
        epoch += 1
    return curve, tokens / max(clock, 1e-9)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget-minutes", type=float, default=20.0, help="training wall-clock per mode")
    ap.add_argument("--modes", default="full,drop,sctd", help=f"comma-separated subset of {','.join(MODES)}")
    ap.add_argument("--evals", type=int, default=8, help="validation points per mode (evenly spaced in time)")
    ap.add_argument("--work-dir", default="/tmp/fairseq_sctd_quality")
    ap.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    ap.add_argument("--books", type=int, default=40)
    ap.add_argument("--valid-books", type=int, default=2)
    ap.add_argument("--valid-batches", type=int, default=50)
    ap.add_argument("--vocab-size", type=int, default=8000)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--tokens-per-sample", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    modes = [m for m in a.modes.split(",") if m]
    for m in modes:
        if m not in MODES:
            ap.error(f"--modes: unknown mode {m!r}; choose from: {', '.join(MODES)}")
    if a.budget_minutes <= 0 or a.evals < 1:
        ap.error(f"--budget-minutes {a.budget_minutes} and --evals {a.evals} must be positive")
    torch.set_num_threads(a.threads)
    data = prepare_data(a)
    results = {}
    for mode in modes:
        print(f"training {mode} for {a.budget_minutes} min ...", flush=True)
        results[mode] = run_mode(a, data, mode)

    print(f"\nvalidation MLM loss (bits per masked token, full model) vs training time; "
          f"L={a.layers} C={a.dim} T={a.tokens_per_sample} B={a.batch_size} budget {a.budget_minutes} min")
    print(f"{'time s':>8}" + "".join(f"{m + ' upd':>12}{m + ' loss':>12}" for m in modes))
    for i in range(a.evals + 1):
        row = f"{results[modes[0]][0][i][0]:>8.0f}"
        for m in modes:
            t, u, l = results[m][0][i]
            row += f"{u:>12d}{l:>12.4f}"
        print(row)
    print("throughput (train tokens/s): " + ", ".join(f"{m} {results[m][1]:.0f}" for m in modes))
    final = {m: results[m][0][-1][2] for m in modes}
    if "full" in final:
        print("final loss vs full: " + ", ".join(f"{m} {final[m] - final['full']:+.4f}" for m in modes if m != "full"))


if __name__ == "__main__":
    sys.exit(main())
