"""GLUE evaluation metrics: accuracy, F1, Matthews correlation, Pearson and Spearman.

Plain numpy so they work on any list/array of predictions and gold values, and so the
sentence_prediction criterion can compute them from confusion counts or collected scores at
the end of validation (fairseq 0.12.2 itself only reports accuracy; the GLUE leaderboard uses
MCC for CoLA, F1+accuracy for MRPC/QQP and Pearson+Spearman for STS-B).
Degenerate inputs (no positives, constant scores) give 0.0 rather than NaN, as scikit-learn
does for F1/MCC, so a log line never carries NaN.

Every GLUE score printed here stands beside its majority-class baseline (majority_baseline): an RTE
accuracy of 52.7 reads as progress until one sees that always answering "entailment" scores 52.7.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Sequence

import numpy as np


def _as_arrays(preds: Sequence, targets: Sequence) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(preds).reshape(-1)
    t = np.asarray(targets).reshape(-1)
    if p.shape != t.shape:
        raise ValueError(f"predictions and targets differ in length: {p.size} vs {t.size}")
    if p.size == 0:
        raise ValueError("cannot compute a metric over zero examples")
    return p, t


def confusion_counts(preds: Sequence, targets: Sequence, positive: int = 1) -> dict[str, int]:
    """tp/fp/fn/tn of a binary task, treating class `positive` as the positive one."""
    p, t = _as_arrays(preds, targets)
    pp, tp_ = p == positive, t == positive
    return {
        "tp": int(np.sum(pp & tp_)),
        "fp": int(np.sum(pp & ~tp_)),
        "fn": int(np.sum(~pp & tp_)),
        "tn": int(np.sum(~pp & ~tp_)),
    }


def accuracy(preds: Sequence, targets: Sequence) -> float:
    """Fraction (0..1) of exact matches."""
    p, t = _as_arrays(preds, targets)
    return float(np.mean(p == t))


def f1_from_counts(tp: float, fp: float, fn: float) -> float:
    denom = 2 * tp + fp + fn
    return float(2 * tp / denom) if denom > 0 else 0.0


def mcc_from_counts(tp: float, fp: float, fn: float, tn: float) -> float:
    denom = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return float((tp * tn - fp * fn) / denom) if denom > 0 else 0.0


def f1(preds: Sequence, targets: Sequence, positive: int = 1) -> float:
    """Binary F1 of class `positive` (GLUE uses label 1 for MRPC/QQP)."""
    c = confusion_counts(preds, targets, positive)
    return f1_from_counts(c["tp"], c["fp"], c["fn"])


def matthews_corrcoef(preds: Sequence, targets: Sequence, positive: int = 1) -> float:
    """Binary Matthews correlation coefficient (CoLA's metric)."""
    c = confusion_counts(preds, targets, positive)
    return mcc_from_counts(c["tp"], c["fp"], c["fn"], c["tn"])


def pearson(x: Sequence, y: Sequence) -> float:
    """Pearson correlation in float64; 0.0 when either side is constant."""
    a, b = _as_arrays(x, y)
    a = a.astype(np.float64) - np.mean(a, dtype=np.float64)
    b = b.astype(np.float64) - np.mean(b, dtype=np.float64)
    denom = math.sqrt(float(np.dot(a, a)) * float(np.dot(b, b)))
    return float(np.dot(a, b) / denom) if denom > 0 else 0.0


def average_ranks(x: Sequence) -> np.ndarray:
    """1-based ranks where tied values share the mean of the ranks they span."""
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    ranks = np.empty(a.size, dtype=np.float64)
    # boundaries of runs of equal values in sorted order
    starts = np.flatnonzero(np.r_[True, sorted_a[1:] != sorted_a[:-1]])
    ends = np.r_[starts[1:], a.size]
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + 1 + e) / 2.0  # mean of ranks s+1 .. e
    return ranks


def spearman(x: Sequence, y: Sequence) -> float:
    """Spearman rank correlation: Pearson of average ranks (ties handled like scipy)."""
    a, b = _as_arrays(x, y)
    return pearson(average_ranks(a), average_ranks(b))


# Which metrics each GLUE task reports; the first is the one used to pick checkpoints.
_TASK_METRICS = {
    "cola": ("mcc",),
    "mrpc": ("f1", "accuracy"),
    "qqp": ("f1", "accuracy"),
    "sts-b": ("pearson", "spearman"),
    "stsb": ("pearson", "spearman"),
}
_KNOWN_TASKS = ("cola", "sst-2", "mrpc", "sts-b", "qqp", "mnli", "qnli", "rte", "wnli")


def glue_metric(task_name: str) -> tuple[str, ...]:
    """Names of the metrics GLUE reports for `task_name` (case-insensitive; others: accuracy)."""
    key = task_name.strip().lower()
    if key not in _KNOWN_TASKS and key not in _TASK_METRICS and key not in ("sst2", "mnli-mm"):
        raise ValueError(f"unknown GLUE task {task_name!r}; choose from: {', '.join(_KNOWN_TASKS)}")
    return _TASK_METRICS.get(key, ("accuracy",))


def compute_glue_metrics(task_name: str, preds: Sequence, targets: Sequence) -> dict[str, float]:
    """All metrics of `task_name` as fractions/correlations (accuracy in 0..1, not percent)."""
    funcs = {
        "accuracy": accuracy,
        "f1": f1,
        "mcc": matthews_corrcoef,
        "pearson": pearson,
        "spearman": spearman,
    }
    return {name: funcs[name](preds, targets) for name in glue_metric(task_name)}


# GLUE's positive class in its binary tasks (MRPC/QQP: paraphrase, CoLA: acceptable, SST-2: positive): the one
# F1 is about. Not the label dictionary's index 1: that dictionary is in train-frequency order, so MRPC's "1"
# (its majority) is index 0.
POSITIVE_LABEL = "1"


def majority_baseline(task_name: str, train_labels: Sequence[str], dev_labels: Sequence[str]) -> tuple[str, dict[str, float]]:
    """(the most frequent train label, the task's metrics x100 of always predicting it on dev): what a model
    that learned nothing scores. Ties go to the label seen first in train. Classification tasks only."""
    metrics = glue_metric(task_name)
    if "pearson" in metrics:
        raise ValueError(f"{task_name} is a regression task: it has no majority class")
    majority = Counter(train_labels).most_common(1)[0][0]
    preds = [majority] * len(dev_labels)
    funcs = {"accuracy": accuracy, "f1": lambda p, t: f1(p, t, positive=POSITIVE_LABEL),
             "mcc": lambda p, t: matthews_corrcoef(p, t, positive=POSITIVE_LABEL)}
    return majority, {name: 100.0 * funcs[name](preds, list(dev_labels)) for name in metrics}
