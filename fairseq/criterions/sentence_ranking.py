"""The sentence_ranking criterion (fairseq's, for multiple-choice tasks): each sample has num_classes
candidate inputs (sample["net_input1"], ..., sample["net_input<num_classes>"]); the ranking head scores
each candidate, the scores are softmaxed over candidates and the NLL of the right one is summed.
sample_size = number of samples; logged: loss (bits) and accuracy (percent). --save-predictions FILE writes
one line per sample: id, predicted candidate and, when the split has labels, the right one (tab-separated)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List

import torch
import torch.nn.functional as F
from omegaconf import II

from fairseq.criterions.fairseq_criterion import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass
from fairseq.logging import metrics

LN2 = math.log(2.0)


@dataclass
class SentenceRankingConfig(FairseqDataclass):
    ranking_head_name: str = field(default="sentence_classification_head",
                                   metadata={"help": "name of the ranking head"})
    save_predictions: str = field(default=None, metadata={"help": "file to write predictions to"})
    num_classes: int = II("task.num_classes")


@register_criterion("sentence_ranking", dataclass=SentenceRankingConfig)
class SentenceRankingCriterion(FairseqCriterion):
    def __init__(self, task, ranking_head_name: str = "sentence_classification_head", save_predictions=None,
                 num_classes: int = 2):
        super().__init__(task)
        self.ranking_head_name = ranking_head_name
        self.num_classes = int(num_classes)
        self.prediction_h = open(save_predictions, "w") if save_predictions is not None else None

    def forward(self, model, sample, reduce: bool = True):
        heads = getattr(model, "classification_heads", {})
        if self.ranking_head_name not in heads:
            raise ValueError(f"model has no ranking head {self.ranking_head_name!r}; check --ranking-head-name")
        scores = [model(**sample[f"net_input{i + 1}"], classification_head_name=self.ranking_head_name)[0]
                  for i in range(self.num_classes)]
        logits = torch.cat(scores, dim=1)
        sample_size = logits.size(0)
        log = {"ntokens": sample["ntokens"], "nsentences": sample_size, "sample_size": sample_size}
        if "target" in sample:
            targets = sample["target"].view(-1)
            lprobs = F.log_softmax(logits, dim=-1, dtype=torch.float32)
            loss = F.nll_loss(lprobs, targets, reduction="sum")
            log["ncorrect"] = (logits.argmax(dim=1) == targets).sum().detach()
        else:
            loss = logits.sum() * 0.0
        if self.prediction_h is not None:  # fairseq's file: id, prediction and (when known) the label, tab-separated
            labels = sample["target"].view(-1).tolist() if "target" in sample else None
            for i, (sid, pred) in enumerate(zip(sample["id"].tolist(), logits.argmax(dim=1).tolist())):
                print(f"{sid}\t{pred}" + (f"\t{labels[i]}" if labels is not None else ""), file=self.prediction_h)
            self.prediction_h.flush()
        log["loss"] = loss.detach()
        return loss, sample_size, log

    @staticmethod
    def reduce_metrics(logging_outputs: List[Dict]) -> Dict[str, float]:
        def total(key):
            return sum(float(lo.get(key, 0.0)) for lo in logging_outputs)

        sample_size, nsentences = total("sample_size"), total("nsentences")
        out = {"loss": total("loss") / sample_size / LN2 if sample_size else 0.0}
        if any("ncorrect" in lo for lo in logging_outputs) and nsentences:
            out["accuracy"] = 100.0 * total("ncorrect") / nsentences
        for key, value in out.items():
            metrics.log_scalar(key, value, sample_size if key == "loss" else nsentences)
        return out
