"""fairseq-preprocess (--only-source): build dict.txt and binarize splits to mmap .bin/.idx.

Output bytes equal fairseq 0.12.2's. Work is split into line-aligned byte ranges so several
processes can count and binarize (fairseq.binarizer); chunks are concatenated in order, so any
--workers gives the same bytes, and every range is streamed a block of lines at a time, so peak
memory does not grow with the corpus. Everything is written under temporary names inside --destdir
and renamed at the end; on any error the temporaries are removed, so a failed run leaves nothing
half-written.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import uuid
from typing import List, Tuple

from fairseq import flag_audit, flag_rules, options
from fairseq.binarizer import FileBinarizer, VocabularyDatasetBinarizer
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
        for tmp, final in self.pending:
            os.replace(tmp, final)
        self.pending = []

    def abort(self) -> None:
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
        flag_rules.check_domains(parser, args)
        flag_audit.check(parser, args)
        main(args)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"fairseq-preprocess: error: {e}")


if __name__ == "__main__":
    cli_main()
