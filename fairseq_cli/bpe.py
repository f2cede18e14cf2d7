"""fairseq-bpe: train a GPT-2-style byte-level BPE, or encode text to BPE ids (one line per line).

`encode` follows fairseq's examples/roberta/multiprocessing_bpe_encoder.py: every line is
stripped; an empty line is dropped unless --keep-empty is given (then it stays an empty line).
"""
from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import sys
from typing import List

from fairseq import atomic_files
from fairseq.data.bpe import encode_lines, load_tokenizer, train_bpe

_WORKER_TOK = None
CHUNK_LINES = 2000


def _init_worker(encoder_json, vocab_bpe, tokenizer_json):
    global _WORKER_TOK
    _WORKER_TOK = load_tokenizer(encoder_json, vocab_bpe, tokenizer_json)


def _encode_chunk(chunk: List[List[str]]) -> List[List[str]]:
    """chunk: rows of parallel lines (one per input file); returns rows of encoded lines."""
    cols = list(zip(*chunk))
    enc = [encode_lines(_WORKER_TOK, list(c)) for c in cols]
    return [list(r) for r in zip(*enc)]


def _lines(f, name: str):
    """The lines of text file `f`; a byte that is not UTF-8 is a ValueError naming the file and line."""
    try:
        yield from f
    except UnicodeDecodeError:
        raise ValueError(_not_utf8(name)) from None


def _not_utf8(name: str) -> str:
    """'<file>:<line>: not valid UTF-8 (byte N)' for the first bad byte of file `name` (read as bytes)."""
    if name == "-":
        return "<stdin>: not valid UTF-8"
    with open(name, "rb") as f:
        offset = 0
        for lineno, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                return f"{name}:{lineno}: not valid UTF-8 (byte {offset + e.start}); fairseq-bpe reads UTF-8 text"
            offset += len(raw)
    return f"{name}: not valid UTF-8"


def _chunks(files, n):
    buf = []
    for row in zip(*files):
        buf.append(list(row))
        if len(buf) >= n:
            yield buf
            buf = []
    if buf:
        yield buf


def _restore_env(name, value):
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def encode_main(args) -> None:
    if len(args.inputs) != len(args.outputs):
        raise ValueError(f"--inputs has {len(args.inputs)} files but --outputs has {len(args.outputs)}")
    for p in args.inputs:
        if p != "-" and not os.path.isfile(p):
            raise FileNotFoundError(f"--inputs: file not found: {p}")
    tok_args = (args.encoder_json, args.vocab_bpe, args.tokenizer_json)
    _init_worker(*tok_args)  # fail fast on bad tokenizer files, in this process
    n_empty = 0
    saved_env = os.environ.get("TOKENIZERS_PARALLELISM")
    with contextlib.ExitStack() as stack:
        stack.callback(_restore_env, "TOKENIZERS_PARALLELISM", saved_env)
        ins = [_lines(stack.enter_context(open(p, encoding="utf-8")) if p != "-" else sys.stdin, p)
               for p in args.inputs]
        # each output replaces its file only once every line is written: an error leaves no empty or partial file
        outs = [stack.enter_context(atomic_files.replacing(p)) if p != "-" else sys.stdout for p in args.outputs]
        if args.workers > 1:
            # fork is cheap; the parent has only loaded (never run) a tokenizer, so no Rayon pool exists yet
            os.environ["TOKENIZERS_PARALLELISM"] = "false"
            ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
            pool = stack.enter_context(ctx.Pool(args.workers, _init_worker, tok_args))
            results = pool.imap(_encode_chunk, _chunks(ins, CHUNK_LINES))
        else:
            results = map(_encode_chunk, _chunks(ins, CHUNK_LINES))
        for rows in results:
            for row in rows:
                if not args.keep_empty and any(r == "" for r in row):
                    n_empty += 1
                    continue
                for r, f in zip(row, outs):
                    f.write(r + "\n")
    if n_empty:
        print(f"[empty] {n_empty} lines skipped (use --keep-empty to keep them)", file=sys.stderr)


def train_main(args) -> None:
    train_bpe(args.inputs, args.vocab_size, args.min_frequency, args.output_dir)
    print(f"wrote tokenizer.json, encoder.json, vocab.bpe to {args.output_dir}")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fairseq-bpe", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a byte-level BPE with HF tokenizers")
    t.add_argument("--inputs", nargs="+", required=True)
    t.add_argument("--vocab-size", type=int, default=8000)
    t.add_argument("--min-frequency", type=int, default=2)
    t.add_argument("--output-dir", required=True)
    e = sub.add_parser("encode", help="encode text lines to BPE ids")
    e.add_argument("--encoder-json")
    e.add_argument("--vocab-bpe")
    e.add_argument("--tokenizer-json")
    e.add_argument("--inputs", nargs="+", default=["-"])
    e.add_argument("--outputs", nargs="+", default=["-"])
    e.add_argument("--keep-empty", action="store_true")
    e.add_argument("--workers", type=int, default=1)
    return p


def cli_main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    try:
        if args.command == "train":
            train_main(args)
        else:
            encode_main(args)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"fairseq-bpe: error: {e}")


if __name__ == "__main__":
    cli_main()
