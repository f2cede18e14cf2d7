"""fairseq-preprocess (--only-source): build dict.txt and binarize splits to mmap .bin/.idx.

Output bytes equal fairseq 0.12.2's. Work is split into line-aligned byte ranges so several
processes can count and binarize (fairseq.binarizer); chunks are concatenated in order, so any
--workers gives the same bytes, and every range is streamed a block of lines at a time, so peak
memory does not grow with the corpus. Everything is written under temporary names inside --destdir
and committed as a unit at the end (fairseq/data/dataset_commit.py: a run killed between two
renames leaves a directory every reader refuses, never a mix that trains); on any error the
temporaries are removed, and a run killed outright leaves them to the next run into --destdir, which
removes them (it holds the destdir's lock, as every run does while its temporaries exist).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import sys
import uuid
from typing import List, Tuple

from fairseq import atomic_files, file_lock, flag_audit, flag_rules, options
from fairseq.binarizer import FileBinarizer, VocabularyDatasetBinarizer
from fairseq.data import dataset_commit
from fairseq.data.dictionary import Dictionary
from fairseq.logging.progress_bar import setup_logging
from fairseq.tokenizer import tokenize_line

logger = logging.getLogger("fairseq_cli.preprocess")


def get_parser() -> argparse.ArgumentParser:
    return options.get_preprocessing_parser()


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


def bpe_coverage(bpe_dir: str, names: List[str], d: Dictionary) -> str:
    """How many of the BPE's pieces dict.txt holds. A BPE has pieces that its own encoding of the training
    text never emits (merges absorbed into longer ones, bytes the text lacks); they are not in dict.txt, and
    text that needs one encodes to <unk> (the hub and the data as fairseq's do)."""
    if "tokenizer.json" in names:
        with open(os.path.join(bpe_dir, "tokenizer.json"), encoding="utf-8") as f:
            vocab = json.load(f)["model"]["vocab"]
    else:
        with open(os.path.join(bpe_dir, "encoder.json"), encoding="utf-8") as f:
            vocab = json.load(f)
    pieces = {str(i) for i in vocab.values()}
    missing = len(pieces - set(d.symbols))
    return (f"dict.txt holds {len(pieces) - missing} of the BPE's {len(pieces)} pieces; the other {missing} never "
            "occur in the training text, and text that needs one encodes to <unk> (docs/python-api.md)")


def _check_input(path: str, flag: str) -> None:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{flag}: input file not found: {path}")
    if os.path.getsize(path) == 0:
        raise ValueError(f"{flag}: input file is empty: {path}")


# -- the run ------------------------------------------------------------------------------------
class _Temps:
    """Temporary files inside destdir (``.tmp-<pid>-<8 hex>.<final name>``), committed as a unit
    (fairseq/data/dataset_commit.py) or removed."""

    def __init__(self, destdir: str):
        self.destdir = destdir
        self.tag = f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.pending: List[Tuple[str, str]] = []

    def path(self, final_name: str) -> str:
        tmp = os.path.join(self.destdir, f"{self.tag}.{final_name}")
        self.pending.append((tmp, os.path.join(self.destdir, final_name)))
        return tmp

    def prefix(self, final_prefix: str) -> str:
        """A temporary prefix whose .bin/.idx become <final_prefix>.bin/.idx on commit."""
        self.path(final_prefix + ".bin")
        self.path(final_prefix + ".idx")
        return os.path.join(self.destdir, f"{self.tag}.{final_prefix}")

    def commit(self) -> None:
        dataset_commit.commit(self.destdir, self.pending)
        self.pending = []

    def abort(self) -> None:
        for name in os.listdir(self.destdir):  # the binarizer's per-worker parts share the tag too
            if name.startswith(self.tag + "."):
                os.remove(os.path.join(self.destdir, name))
        self.pending = []


# Exactly what _Temps names its files: a run killed with -9 leaves them (as large as the dataset).
_LEFTOVER = re.compile(r"\.tmp-\d+-[0-9a-f]{8}\.(dict(\.[^/]+)?\.txt|[^/]+\.(bin|idx)|preprocess\.log|"
                       + "|".join(re.escape(n) for n in BPE_FILES) + ")")
LOCK_NAME = ".fairseq-preprocess.lock"


def take_destdir(destdir: str) -> str:
    """Hold destdir's lock for this run (one fairseq-preprocess per --destdir), then remove the temp
    files of earlier runs: every run holds the lock while its temp files exist, so those left now
    belong to runs that are gone."""
    path = os.path.join(destdir, LOCK_NAME)
    try:
        file_lock.acquire(path)
    except file_lock.Busy as e:
        owner = e.owner or "its owner not recorded yet"
        raise ValueError(f"--destdir {destdir} is in use by another fairseq-preprocess ({owner}; lock file {path}); "
                         "wait for it or choose another --destdir") from None
    except OSError as e:
        if e.errno not in file_lock.NO_LOCKS:
            raise ValueError(f"--destdir {destdir}: cannot lock {path} ({e.strerror or e})") from None
        logger.warning(f"--destdir {destdir}: the file system does not support locks ({e.strerror}); a second "
                       "fairseq-preprocess into it would not be refused, and earlier runs' temp files stay")
        return path
    leftovers = []
    for name in sorted(os.listdir(destdir)):
        full = os.path.join(destdir, name)
        if _LEFTOVER.fullmatch(name) and os.path.isfile(full) and not os.path.islink(full):
            leftovers.append((full, os.path.getsize(full)))
            os.remove(full)
    leftovers += atomic_files.remove_abandoned(destdir, re.escape(dataset_commit.MARKER))  # a marker half-written
    for full, size in leftovers:
        logger.warning(f"removed {full} ({size:,} bytes), left by a fairseq-preprocess that never finished")
    return path


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
    """fairseq's dictionary of `paths`: counted a block at a time in `workers` line-aligned byte ranges
    (Dictionary.add_file_to_dictionary, fairseq's public way), then finalized."""
    d = Dictionary()
    for path in paths:
        Dictionary.add_file_to_dictionary(path, d, tokenize_line, workers)
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
    lock = take_destdir(args.destdir)
    try:
        _run(args, jobs, bpe_names)
    finally:
        file_lock.release(lock)
        if created and not os.listdir(args.destdir):
            os.rmdir(args.destdir)


def _run(args, jobs, bpe_names) -> None:
    """Write every output under a temp name, then commit them as a unit."""
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
            binarizer = VocabularyDatasetBinarizer(d, append_eos=True)
            for flag, path, out_name in jobs:
                info(f"[{args.source_lang}] Dictionary: {len(d)} types")
                out_prefix = temps.prefix(out_name)
                summary = FileBinarizer.multiprocess_dataset(
                    path, args.dataset_impl, binarizer, out_prefix, vocab_size=len(d), num_workers=args.workers
                )
                info(f"[{args.source_lang}] {path}: {summary} (by {d.unk_word})")
        for name in bpe_names:
            shutil.copyfile(os.path.join(args.bpe_dir, name), temps.path(name))
        if bpe_names:
            info(f"copied the BPE ({', '.join(bpe_names)}) from {args.bpe_dir}")
            info(bpe_coverage(args.bpe_dir, bpe_names, d))
        info(f"Wrote preprocessed data to {args.destdir}")
        with open(temps.path("preprocess.log"), "w", encoding="utf-8") as f:
            f.write("\n".join(log_lines + log_handler_lines) + "\n")
        temps.commit()
    except BaseException:
        temps.abort()
        raise


def cli_main(argv=None) -> None:
    setup_logging()
    parser = get_parser()
    args = parser.parse_args(argv)
    logger.info(args)
    try:
        flag_rules.check_domains(parser, args)
        flag_audit.check(parser, args)
        main(args)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"fairseq-preprocess: error: {e}")


if __name__ == "__main__":
    cli_main()
