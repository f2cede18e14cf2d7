"""The sentence_prediction criterion: summed NLL over classes (or summed MSE with
--regression-target), sample_size = number of sentences, as fairseq 0.12.2.

Logged values (criterion.reduce_metrics): loss (bits), nll_loss (per token, as fairseq), and
accuracy (percent, 1 decimal) for classification. Beyond fairseq, so GLUE's own metrics come out
of an ordinary validation pass:
- binary tasks also sum tp/fp/fn/tn -> f1 and mcc (x100), the positive class being GLUE's label "1"
  (glue_metrics.POSITIVE_LABEL; index 1 when the label dictionary has no "1");
- regression sums n, x, y, x^2, y^2, xy -> pearson (x100); Spearman needs ranks, which sums
  cannot carry, so during validation (model in eval mode) each forward appends its
  (prediction, target) pairs to a per-process buffer, and reduce_metrics turns the buffer into
  `spearman` when its length equals the summed count (then clears it). Under data parallelism
  each rank only sees its own pairs, so spearman is left out there; pearson stays exact.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List

import numpy as np
import torch
import torch.nn.functional as F

from fairseq import glue_metrics
from fairseq.criterions.fairseq_criterion import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass
from fairseq.logging import metrics

LN2 = math.log(2.0)
_DEFAULT_HEAD = "sentence_classification_head"

# (predictions, targets) of the validation pass in progress; see module docstring
_VALID_PAIRS: List[np.ndarray] = []


def _total(logs: List[Dict], key: str) -> float:
    return sum(float(lo.get(key, 0.0)) for lo in logs)


def positive_class(label_dictionary) -> int:
    """The target index of GLUE's positive label (F1's class): the label dictionary is in train-frequency
    order, so MRPC's "1", its majority, is index 0; index 1 where there is no such label."""
    label = glue_metrics.POSITIVE_LABEL
    if label_dictionary is None or label not in label_dictionary:
        return 1
    return label_dictionary.index(label) - label_dictionary.nspecial


@dataclass
class SentencePredictionConfig(FairseqDataclass):
    classification_head_name: str = field(default=_DEFAULT_HEAD, metadata={"help": "name of the classification head"})
    regression_target: bool = field(default=False)


@register_criterion("sentence_prediction", dataclass=SentencePredictionConfig)
class SentencePredictionCriterion(FairseqCriterion):
    """(--classification-head-name and --regression-target are also task flags; the task adds them.)"""

    def __init__(self, task, classification_head_name: str = _DEFAULT_HEAD, regression_target: bool = False):
        super().__init__(task)
        self.head_name = classification_head_name or _DEFAULT_HEAD
        self.regression_target = bool(regression_target)
        self.positive = positive_class(getattr(task, "label_dictionary", None))

    def forward(self, model, sample, reduce: bool = True):
        heads = getattr(model, "classification_heads", None)
        if heads is not None and self.head_name not in heads:
            raise ValueError(f"model has no classification head {self.head_name!r} "
                             f"(heads: {sorted(heads) or 'none'}); check --classification-head-name")
        logits, _ = model(**sample["net_input"], features_only=True, classification_head_name=self.head_name)
        targets = sample["target"].view(-1)
        sample_size = targets.numel()
        log = {"ntokens": sample["ntokens"], "nsentences": sample_size, "sample_size": sample_size}
        if not self.regression_target:
            lprobs = F.log_softmax(logits, dim=-1, dtype=torch.float32)
            loss = F.nll_loss(lprobs, targets, reduction="sum")
            preds = logits.argmax(dim=1)
            log["ncorrect"] = (preds == targets).sum().detach()
            if logits.size(1) == 2:
                p, t = preds.eq(self.positive), targets.eq(self.positive)
                log["tp"] = (p & t).sum().detach()
                log["fp"] = (p & ~t).sum().detach()
                log["fn"] = (~p & t).sum().detach()
                log["tn"] = (~p & ~t).sum().detach()
        else:
            x = logits.view(-1).float()
            y = targets.float()
            loss = F.mse_loss(x, y, reduction="sum")
            xd, yd = x.detach().double(), y.detach().double()
            log.update(reg_n=sample_size, reg_sx=xd.sum(), reg_sy=yd.sum(), reg_sxx=(xd * xd).sum(),
                       reg_syy=(yd * yd).sum(), reg_sxy=(xd * yd).sum())
            if not model.training:
                _VALID_PAIRS.append(torch.stack([xd, yd], 1).cpu().numpy())
        for name, scale, penalty in (("mha_reg_loss", "mha_reg_scale_factor", "_get_adaptive_head_loss"),
                                     ("ffn_reg_loss", "ffn_reg_scale_factor", "_get_adaptive_ffn_loss")):
            if float(getattr(getattr(model, "args", None), scale, 0.0) or 0.0) != 0.0:  # AdaPrune (modules.adaprune)
                reg = getattr(model, penalty)()
                loss = loss + reg
                log[name] = reg.detach()
        log["loss"] = loss.detach()
        return loss, sample_size, log

    @staticmethod
    def reduce_metrics(logging_outputs: List[Dict]) -> Dict[str, float]:
        loss_sum = _total(logging_outputs, "loss")
        sample_size = _total(logging_outputs, "sample_size")
        ntokens = _total(logging_outputs, "ntokens")
        nsentences = _total(logging_outputs, "nsentences")
        out = {"loss": loss_sum / sample_size / LN2 if sample_size else 0.0}
        for name in ("mha_reg_loss", "ffn_reg_loss"):  # AdaPrune's penalties, when model.args sets them
            if _total(logging_outputs, name) and sample_size:
                out[name] = _total(logging_outputs, name) / sample_size / LN2
        if sample_size != ntokens and ntokens:
            out["nll_loss"] = loss_sum / ntokens / LN2
        if any("ncorrect" in lo for lo in logging_outputs) and nsentences:
            out["accuracy"] = round(100.0 * _total(logging_outputs, "ncorrect") / nsentences, 1)
        if any("tp" in lo for lo in logging_outputs):
            c = {k: _total(logging_outputs, k) for k in ("tp", "fp", "fn", "tn")}
            out["f1"] = round(100.0 * glue_metrics.f1_from_counts(c["tp"], c["fp"], c["fn"]), 2)
            out["mcc"] = round(100.0 * glue_metrics.mcc_from_counts(c["tp"], c["fp"], c["fn"], c["tn"]), 2)
        n = _total(logging_outputs, "reg_n")
        if n > 0:
            sx, sy = _total(logging_outputs, "reg_sx"), _total(logging_outputs, "reg_sy")
            vx = _total(logging_outputs, "reg_sxx") - sx * sx / n
            vy = _total(logging_outputs, "reg_syy") - sy * sy / n
            cov = _total(logging_outputs, "reg_sxy") - sx * sy / n
            out["pearson"] = round(100.0 * cov / math.sqrt(vx * vy), 2) if vx > 0 and vy > 0 else 0.0
            pairs = pop_validation_pairs()
            if pairs is not None and len(pairs) == int(round(n)):
                out["spearman"] = round(100.0 * glue_metrics.spearman(pairs[:, 0], pairs[:, 1]), 2)
        for key, value in out.items():
            metrics.log_scalar(key, value, sample_size if key == "loss" else 1)
        return out


def pop_validation_pairs():
    """The (prediction, target) rows collected since the last call, or None; clears the buffer."""
    if not _VALID_PAIRS:
        return None
    pairs = np.concatenate(_VALID_PAIRS)
    _VALID_PAIRS.clear()
    return pairs
