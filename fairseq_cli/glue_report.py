"""The dev metrics of a GLUE fine-tuning run, each beside its majority-class baseline (what glue.sh prints).

    python -m fairseq_cli.glue_report TASK TRAIN_LOG GLUE_DIR

TRAIN_LOG is fairseq-train's --log-format json output; GLUE_DIR/TASK holds the official TSVs. One line per
validation, then the best one (STS-B: lowest loss; others: the task's first metric, highest), with the score
that always answering the most frequent train label gets on the same dev set beside each metric of a
classification task: a fine-tuned model at that score has learned nothing yet.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Dict, List, Optional

from fairseq.glue_metrics import glue_metric, majority_baseline
from fairseq_cli.glue_prep import TASKS, read_split


def validations(log_text: str) -> List[Dict[str, str]]:
    """The valid records of a json training log ('... | valid | {...}' lines)."""
    return [json.loads(line.split(" | ", 3)[3]) for line in log_text.splitlines() if " | valid | " in line]


def baseline(task: str, glue_dir: str):
    """(majority label, {metric: score x100}) on the split fairseq validates on; None for STS-B."""
    if TASKS[task].labels is None:
        return None
    dev_split = next(glue for glue, fairseq in TASKS[task].splits if fairseq == "valid")
    labels = [read_split(os.path.join(glue_dir, task, f"{split}.tsv"), task, split, True)[1]
              for split in ("train", dev_split)]
    return majority_baseline(task, *labels)


def report(task: str, rows: List[Dict[str, str]], base: Optional[tuple]) -> List[str]:
    names = ["loss"] + list(glue_metric(task))
    scores = base[1] if base else {}

    def cells(row, beside: bool) -> str:
        out = []
        for n in names:
            cell = f"{n}={row.get('valid_' + n, 'n/a')}"
            if beside and n in scores:
                cell += f" (majority class {scores[n]:.{1 if n == 'accuracy' else 2}f})"  # as the log rounds
            out.append(cell)
        return ", ".join(out)

    lines = [f"{task} dev epoch {r.get('epoch', '?')}: {cells(r, False)}" for r in rows]
    key = "valid_" + ("loss" if task == "STS-B" else names[1])
    pick = min if task == "STS-B" else max
    best = pick(rows, key=lambda r: float(r.get(key, "nan")))
    lines.append(f"{task} best dev: {cells(best, True)}")
    if base:
        lines.append(f"{task} majority class: always {base[0]!r}, the most frequent label of train.tsv, "
                     "scored on the same dev set")
    return lines


def main(argv=None) -> None:
    task, log, glue_dir = argv if argv is not None else sys.argv[1:]
    with open(log, encoding="utf-8") as f:
        rows = validations(f.read())
    if not rows:
        sys.exit(f"no validation lines in {log}")
    print("\n".join(report(task, rows, baseline(task, glue_dir))))


if __name__ == "__main__":
    main()
