"""fairseq-preprocess (--only-source): build dict.txt and binarize splits to mmap .bin/.idx.

Output bytes equal fairseq 0.12.2's. Work is split into line-aligned byte ranges so several
processes can count and binarize; chunks are concatenated in order, so any --workers gives the
same bytes. Everything is written under temporary names inside --destdir and renamed at the end;
on any error the temporaries are removed, so a failed run leaves nothing half-written.
"""
from __future__ import annotations

import argparse
import io
import logging
import multiprocessing as mp
import os
import shutil
import sys
import uuid
from collections import Counter
from typing import List, Tuple

import numpy as np

from fairseq import flag_audit, options
from fairseq.data import indexed_dataset
from fairseq.data.dictionary import Dictionary
from fairseq.logging.progress_bar import setup_logging

logger = logging.getLogger("fairseq_cli.preprocess")


def get_parser() -> argparse.ArgumentParser:
    p = options.ArgumentParser(prog="fairseq-preprocess", description="Build a dictionary and binarize text.")
    p.add_argument("-s", "--source-lang", default=None)
    p.add_argument("-t", "--target-lang", default=None)
    p.add_argument("--trainpref", default=None)
    p.add_argument("--validpref", default=None, help="comma-separated prefixes -> valid, valid1, ...")
    p.add_argument("--testpref", default=None, help="comma-separated prefixes -> test, test1, ...")
    p.add_argument("--destdir", default="data-bin")
    p.add_argument("--srcdict", default=None)
    p.add_argument("--thresholdsrc", type=int, default=0)
    p.add_argument("--nwordssrc", type=int, default=-1)
    p.add_argument("--padding-factor", type=int, default=8)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--dataset-impl", default="mmap", choices=["mmap"])
    p.add_argument("--only-source", action="store_true")
    p.add_argument("--dict-only", action="store_true")
    p.add_argument("--bpe-dir", default=None,
                   help="the BPE the inputs were encoded with (fairseq-bpe train's --output-dir): its tokenizer.json "
                        "and/or encoder.json + vocab.bpe are copied into --destdir, where "
                        "RobertaModel.from_pretrained(..., data_name_or_path=DESTDIR) and glue.sh find them")
    return p


# The BPE files fairseq-bpe train writes, as the hub looks for them (tokenizer.json, else the GPT-2 pair).
BPE_FILES = ("tokenizer.json", "encoder.json", "vocab.bpe")


def bpe_files(bpe_dir: str) -> List[str]:
    """The BPE files of --bpe-dir to copy; a clear error (before any work) when it holds no usable BPE."""
    if not os.path.isdir(bpe_dir):
        raise FileNotFoundError(f"--bpe-dir: directory not found: {bpe_dir}")
    found = [name for name in BPE_FILES if os.path.isfile(os.path.join(bpe_dir, name))]
    if "tokenizer.json" not in found and not {"encoder.json", "vocab.bpe"} <= set(found):
        raise FileNotFoundError(f"--bpe-dir {bpe_dir}: no tokenizer.json and no encoder.json + vocab.bpe "
                                f"(the files fairseq-bpe train writes)")
    return found


# -- chunking -----------------------------------------------------------------------------------
def find_offsets(path: str, num_chunks: int) -> List[int]:
    """num_chunks+1 byte offsets, each at the start of a line (the last is the file size)."""
    size = os.path.getsize(path)
    offsets = [0]
    with open(path, "rb") as f:
        for i in range(1, num_chunks):
            f.seek(max(size * i // num_chunks, offsets[-1]))
            if f.tell() > 0:
                f.seek(f.tell() - 1)
                f.readline()  # move to the start of the next line
            offsets.append(max(f.tell(), offsets[-1]))
    offsets.append(size)
    return offsets


def read_lines(path: str, start: int, end: int):
    """Lines of bytes [start, end) decoded as UTF-8 with universal newlines (Python text mode)."""
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not valid UTF-8 near byte {start + e.start}") from None
    return io.StringIO(text, newline=None)


def _count_chunk(args) -> Counter:
    path, start, end, eos_word = args
    counter: Counter = Counter()
    for line in read_lines(path, start, end):
        counter.update(line.split())
        counter[eos_word] += 1
    return counter


def _binarize_chunk(args) -> Tuple[int, int, int]:
    """Write the chunk to <out_prefix>.bin/.idx; return (sentences, tokens, replaced)."""
    path, start, end, dict_path_or_obj, out_prefix, dtype = args
    d = dict_path_or_obj if isinstance(dict_path_or_obj, Dictionary) else Dictionary.load(dict_path_or_obj)
    get, unk, eos = d.indices.get, d.unk_index, d.eos_index
    builder = indexed_dataset.MMapIndexedDatasetBuilder(indexed_dataset.data_file_path(out_prefix), dtype)
    flat: List[int] = []
    sizes: List[int] = []
    nseq = ntok = nrep = 0
    for line in read_lines(path, start, end):
        words = line.split()
        ids = [get(w, unk) for w in words]
        nrep += sum(1 for w, i in zip(words, ids) if i == unk and w != d.unk_word)
        ids.append(eos)
        flat.extend(ids)
        sizes.append(len(ids))
        nseq += 1
        ntok += len(ids)
        if len(flat) > 1 << 22:
            builder.add_items(np.array(flat, dtype=np.int64), np.array(sizes))
            flat, sizes = [], []
    if sizes:
        builder.add_items(np.array(flat, dtype=np.int64), np.array(sizes))
    builder.finalize(indexed_dataset.index_file_path(out_prefix))
    return nseq, ntok, nrep


def _run(fn, jobs, workers):
    if workers > 1 and len(jobs) > 1:
        with mp.get_context("fork" if sys.platform.startswith("linux") else "spawn").Pool(workers) as pool:
            return pool.map(fn, jobs)
    return [fn(j) for j in jobs]


def _check_input(path: str, flag: str) -> None:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{flag}: input file not found: {path}")
    if os.path.getsize(path) == 0:
        raise ValueError(f"{flag}: input file is empty: {path}")


# -- the run ------------------------------------------------------------------------------------
class _Temps:
    """Temporary files inside destdir, renamed to their final names on commit."""

    def __init__(self, destdir: str):
        self.destdir = destdir
        self.tag = f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.pending: List[Tuple[str, str]] = []
        self.scratch: List[str] = []

    def path(self, final_name: str) -> str:
        tmp = os.path.join(self.destdir, f"{self.tag}.{final_name}")
        self.pending.append((tmp, os.path.join(self.destdir, final_name)))
        return tmp

    def scratch_prefix(self, name: str) -> str:
        prefix = os.path.join(self.destdir, f"{self.tag}.scratch.{name}")
        self.scratch += [prefix + ".bin", prefix + ".idx"]
        return prefix

    def commit(self) -> None:
        self.cleanup_scratch()
        for tmp, final in self.pending:
            os.replace(tmp, final)
        self.pending = []

    def cleanup_scratch(self) -> None:
        for p in self.scratch:
            if os.path.exists(p):
                os.remove(p)
        self.scratch = []

    def abort(self) -> None:
        self.cleanup_scratch()
        for tmp, _ in self.pending:
            if os.path.exists(tmp):
                os.remove(tmp)
        self.pending = []


def _split_jobs(args) -> List[Tuple[str, str, str]]:
    """(flag, input file, output prefix) for every split, fairseq's naming."""
    def infile(pref):
        return f"{pref}.{args.source_lang}" if args.source_lang else pref

    lang_part = f".{args.source_lang}-{args.target_lang}.{args.source_lang}" if args.source_lang else ""
    jobs = []
    if args.trainpref:
        jobs.append(("--trainpref", infile(args.trainpref), "train" + lang_part))
    for flag, prefs, name in (("--validpref", args.validpref, "valid"), ("--testpref", args.testpref, "test")):
        if prefs:
            for k, pref in enumerate(prefs.split(",")):
                jobs.append((flag, infile(pref), (f"{name}{k}" if k > 0 else name) + lang_part))
    return jobs


def build_dictionary(paths: List[str], workers: int, threshold: int, nwords: int, padding_factor: int) -> Dictionary:
    d = Dictionary()
    for path in paths:
        offsets = find_offsets(path, max(workers, 1))
        jobs = [(path, offsets[i], offsets[i + 1], d.eos_word) for i in range(len(offsets) - 1)]
        total: Counter = Counter()
        for c in _run(_count_chunk, jobs, workers):
            total.update(c)
        for w, c in sorted(total.items()):
            d.add_symbol(w, c)
    d.finalize(threshold=threshold, nwords=nwords, padding_factor=padding_factor)
    return d


def main(args) -> None:
    if not args.only_source:
        raise ValueError("only --only-source preprocessing is supported (masked-LM and GLUE data)")
    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    jobs = _split_jobs(args)
    for flag, path, _ in jobs:
        _check_input(path, flag)
    if args.srcdict is None and not args.trainpref:
        raise ValueError("--trainpref is required when --srcdict is not given")
    if args.srcdict is not None and not os.path.isfile(args.srcdict):
        raise FileNotFoundError(f"--srcdict: dictionary file not found: {args.srcdict}")
    bpe_names = bpe_files(args.bpe_dir) if args.bpe_dir is not None else []

    created = not os.path.isdir(args.destdir)
    os.makedirs(args.destdir, exist_ok=True)
    temps = _Temps(args.destdir)
    log_lines = [str(args)]
    log_handler_lines = []

    def info(msg):
        logger.info(msg)
        log_handler_lines.append(msg)

    try:
        if args.srcdict:
            d = Dictionary.load(args.srcdict)
        else:
            d = build_dictionary([jobs[0][1]], args.workers, args.thresholdsrc, args.nwordssrc, args.padding_factor)
        dict_name = f"dict.{args.source_lang}.txt" if args.source_lang else "dict.txt"
        d.save(temps.path(dict_name))
        if not args.dict_only:
            dtype = indexed_dataset.best_fitting_dtype(len(d))
            for flag, path, out_name in jobs:
                info(f"[{args.source_lang}] Dictionary: {len(d)} types")
                offsets = find_offsets(path, args.workers)
                chunk_jobs = []
                for i in range(len(offsets) - 1):
                    prefix = temps.scratch_prefix(f"{out_name}.{i}")
                    chunk_jobs.append((path, offsets[i], offsets[i + 1], d, prefix, dtype))
                stats = _run(_binarize_chunk, chunk_jobs, args.workers)
                builder = indexed_dataset.MMapIndexedDatasetBuilder(temps.path(out_name + ".bin"), dtype)
                for job in chunk_jobs:
                    builder.merge_file_(job[4])
                builder.finalize(temps.path(out_name + ".idx"))
                temps.cleanup_scratch()
                nseq = sum(s[0] for s in stats)
                ntok = sum(s[1] for s in stats)
                nrep = sum(s[2] for s in stats)
                pct = 100 * nrep / ntok if ntok else 0.0
                info(f"[{args.source_lang}] {path}: {nseq} sents, {ntok} tokens, {pct:.3}% replaced (by <unk>)")
        for name in bpe_names:
            shutil.copyfile(os.path.join(args.bpe_dir, name), temps.path(name))
        if bpe_names:
            info(f"copied the BPE ({', '.join(bpe_names)}) from {args.bpe_dir}")
        info(f"Wrote preprocessed data to {args.destdir}")
        with open(temps.path("preprocess.log"), "w", encoding="utf-8") as f:
            f.write("\n".join(log_lines + log_handler_lines) + "\n")
        temps.commit()
    except BaseException:
        temps.abort()
        if created and not os.listdir(args.destdir):
            os.rmdir(args.destdir)
        raise


def cli_main(argv=None) -> None:
    setup_logging()
    parser = get_parser()
    args = parser.parse_args(argv)
    logger.info(args)
    try:
        options.check_domains(parser, args)
        flag_audit.check(parser, args)
        main(args)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"fairseq-preprocess: error: {e}")


if __name__ == "__main__":
    cli_main()
