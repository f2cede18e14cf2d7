"""fairseq-glue-prep: official GLUE TSVs -> the binarized layout of --task sentence_prediction.

    fairseq-glue-prep --task RTE --glue-dir glue_data --dict dict.txt --out RTE-bin \
        (--tokenizer-json tokenizer.json | --bpe-dir DIR-with-encoder.json+vocab.bpe) [--workers N]

Follows fairseq's examples/roberta/preprocess_GLUE_tasks.sh recipe: the same columns per task,
header rows dropped (CoLA train/dev have none), QQP rows with the wrong field count skipped, each
text stripped and BPE-encoded, then `fairseq-preprocess --only-source --srcdict dict.txt` per input
and a label dictionary built from the train labels (STS-B: label/{train,valid}.label = score/5).
dev -> valid, test -> test (MNLI: dev_matched -> valid, dev_mismatched -> valid1, likewise test).
Unlike the shell recipe, a malformed row is an error naming the file and line, not a silent blank.
The BPE given (tokenizer.json, or encoder.json + vocab.bpe) is copied into --out, so the hub reads the
fine-tuned model with RobertaModel.from_pretrained(ckpt_dir, data_name_or_path=OUT) and nothing else.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from fairseq.data.bpe import encode_lines, load_tokenizer
from fairseq.logging.progress_bar import setup_logging
from fairseq_cli import preprocess

logger = logging.getLogger("fairseq_cli.glue_prep")


@dataclass(frozen=True)
class GlueTask:
    inputs: Tuple[int, ...]          # 1-based columns of train/dev
    test_inputs: Tuple[int, ...]     # 1-based columns of test
    label: int                       # 1-based label column of train/dev
    labels: Optional[Tuple[str, ...]]  # allowed label strings (None: a 0..5 float, STS-B)
    dev_label: Optional[int] = None  # MNLI dev has the gold label elsewhere
    no_header: Tuple[str, ...] = ()  # splits without a header row
    num_fields: Optional[int] = None  # QQP: keep only rows with exactly this many fields
    splits: Tuple[Tuple[str, str], ...] = (("train", "train"), ("dev", "valid"), ("test", "test"))


BINARY = ("0", "1")
NLI2 = ("entailment", "not_entailment")
TASKS: Dict[str, GlueTask] = {
    "CoLA": GlueTask((4,), (2,), 2, BINARY, no_header=("train", "dev")),
    "SST-2": GlueTask((1,), (2,), 2, BINARY),
    "MRPC": GlueTask((4, 5), (4, 5), 1, BINARY),
    "QQP": GlueTask((4, 5), (2, 3), 6, BINARY, num_fields=6),
    "STS-B": GlueTask((8, 9), (8, 9), 10, None),
    "MNLI": GlueTask((9, 10), (9, 10), 12, ("contradiction", "entailment", "neutral"), dev_label=16,
                     splits=(("train", "train"), ("dev_matched", "valid"), ("dev_mismatched", "valid1"),
                             ("test_matched", "test"), ("test_mismatched", "test1"))),
    "QNLI": GlueTask((2, 3), (2, 3), 4, NLI2),
    "RTE": GlueTask((2, 3), (2, 3), 4, NLI2),
    "WNLI": GlueTask((2, 3), (2, 3), 4, BINARY),
}


def read_split(path: str, task_name: str, split: str, with_labels: bool) -> Tuple[List[List[str]], List[str]]:
    """(texts per input column, labels) of one TSV; errors name the file and line."""
    spec = TASKS[task_name]
    is_test = split.startswith("test")
    cols = spec.test_inputs if is_test else spec.inputs
    label_col = (spec.dev_label if spec.dev_label and split != "train" else spec.label) if with_labels else None
    with open(path, encoding="utf-8", newline="\n") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    first = 1 if split in spec.no_header else 2
    rows = lines[first - 1:]
    if not rows:
        raise ValueError(f"{path}: no data rows (empty file)")
    texts: List[List[str]] = [[] for _ in cols]
    labels: List[str] = []
    need = max(cols + ((label_col,) if label_col else ()))
    for offset, line in enumerate(rows):
        lineno = first + offset
        fields = line.split("\t")
        if spec.num_fields is not None and not is_test and len(fields) != spec.num_fields:
            continue  # the recipe drops malformed QQP rows
        if len(fields) < need:
            raise ValueError(f"{path}:{lineno}: missing column {need} (row has {len(fields)} tab-separated fields)")
        for k, c in enumerate(cols):
            texts[k].append(fields[c - 1])
        if label_col:
            label = fields[label_col - 1].strip()
            if spec.labels is None:
                try:
                    value = float(label)
                except ValueError:
                    raise ValueError(f"{path}:{lineno}: label {label!r} is not a number ({task_name} score)") from None
                if not 0.0 <= value <= 5.0:
                    raise ValueError(f"{path}:{lineno}: score {label!r} outside [0, 5]")
            elif label not in spec.labels:
                raise ValueError(f"{path}:{lineno}: unknown label {label!r} for {task_name} "
                                 f"(expected one of: {', '.join(spec.labels)})")
            labels.append(label)
    if not labels and not texts[0]:
        raise ValueError(f"{path}: no usable data rows")
    return texts, labels


def _write(path: str, lines: List[str]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))


def _preprocess(argv: List[str]) -> None:
    preprocess.main(preprocess.get_parser().parse_args(argv))


def prepare(task_name: str, glue_dir: str, dict_path: str, out: str, tokenizer_json: Optional[str] = None,
            bpe_dir: Optional[str] = None, workers: int = 1) -> None:
    if task_name not in TASKS:
        raise ValueError(f"unknown --task {task_name!r}; choose from: {', '.join(TASKS)}")
    if not os.path.isfile(dict_path):
        raise FileNotFoundError(f"--dict file not found: {dict_path}")
    if bpe_dir is not None:
        tok = load_tokenizer(os.path.join(bpe_dir, "encoder.json"), os.path.join(bpe_dir, "vocab.bpe"))
    elif tokenizer_json is not None:
        tok = load_tokenizer(tokenizer_json=tokenizer_json)
    else:
        raise ValueError("give --tokenizer-json or --bpe-dir (the BPE used for pretraining)")
    spec = TASKS[task_name]
    task_dir = os.path.join(glue_dir, task_name)
    processed = os.path.join(out, "processed")
    os.makedirs(processed, exist_ok=True)
    done: List[Tuple[str, str, bool]] = []  # (glue split, fairseq split, has labels)
    for split, fs_split in spec.splits:
        path = os.path.join(task_dir, f"{split}.tsv")
        if not os.path.isfile(path):
            if split == "train" or split.startswith("dev"):
                raise FileNotFoundError(f"{task_name} {split} split not found: {path}")
            logger.info(f"no {path}; skipping the {fs_split} split")
            continue
        with_labels = not split.startswith("test")
        texts, labels = read_split(path, task_name, split, with_labels)
        for k, column in enumerate(texts):
            _write(os.path.join(processed, f"{split}.raw.input{k}"), column)
            _write(os.path.join(processed, f"{split}.input{k}"), encode_lines(tok, column))
        if with_labels:
            _write(os.path.join(processed, f"{split}.label"), labels)
        logger.info(f"{path}: {len(texts[0])} rows")
        done.append((split, fs_split, with_labels))

    def prefs(kind: str, which: str) -> str:
        return ",".join(os.path.join(processed, f"{s}.{kind}") for s, fs, _ in done if fs.startswith(which))

    for k in range(len(spec.inputs)):
        argv = ["--only-source", "--trainpref", prefs(f"input{k}", "train"), "--validpref",
                prefs(f"input{k}", "valid"), "--destdir", os.path.join(out, f"input{k}"), "--workers",
                str(workers), "--srcdict", dict_path]
        if prefs(f"input{k}", "test"):
            argv += ["--testpref", prefs(f"input{k}", "test")]
        _preprocess(argv)
    label_dir = os.path.join(out, "label")
    if spec.labels is not None:
        _preprocess(["--only-source", "--trainpref", prefs("label", "train"), "--validpref", prefs("label", "valid"),
                     "--destdir", label_dir, "--workers", str(workers)])
    else:  # STS-B: raw scores scaled to [0, 1], printed as awk's default %.6g
        os.makedirs(label_dir, exist_ok=True)
        for split, fs_split, with_labels in done:
            if with_labels:
                src = os.path.join(processed, f"{split}.label")
                with open(src, encoding="utf-8") as f:
                    scaled = ["%.6g" % (float(v) / 5.0) for v in f.read().split("\n") if v]
                _write(os.path.join(label_dir, f"{fs_split}.label"), scaled)
    bpe_files = ({"tokenizer.json": tokenizer_json} if bpe_dir is None else
                 {name: os.path.join(bpe_dir, name) for name in ("encoder.json", "vocab.bpe")})
    for name, src in bpe_files.items():  # where from_pretrained(..., data_name_or_path=out) looks for it
        shutil.copyfile(src, os.path.join(out, name))
    logger.info(f"wrote {task_name} to {out} (with the BPE: {', '.join(bpe_files)})")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fairseq-glue-prep", description=__doc__.split("\n\n")[0])
    p.add_argument("--task", required=True, help="one of: " + ", ".join(TASKS))
    p.add_argument("--glue-dir", required=True, help="folder holding <TASK>/{train,dev,test}.tsv")
    p.add_argument("--dict", required=True, dest="dict_path", help="the pretraining dict.txt")
    p.add_argument("--out", required=True, help="output folder (<TASK>-bin)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--tokenizer-json", help="HF tokenizers file of the pretraining BPE")
    g.add_argument("--bpe-dir", help="folder with GPT-2 encoder.json and vocab.bpe")
    p.add_argument("--workers", type=int, default=1)
    return p


def cli_main(argv=None) -> None:
    setup_logging()
    a = get_parser().parse_args(argv)
    try:
        prepare(a.task, a.glue_dir, a.dict_path, a.out, a.tokenizer_json, a.bpe_dir, a.workers)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"fairseq-glue-prep: error: {e}")


if __name__ == "__main__":
    cli_main()
