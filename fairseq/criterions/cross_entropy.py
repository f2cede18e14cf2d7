"""The cross_entropy criterion, fairseq's default (FAIRSEQ_SPEC section 4.7).

On masked-LM samples it sums the NLL of every non-pad target (the masked positions) and divides
the gradients by ntokens (all input tokens) or, with --sentence-avg, by the number of sentences.

Speed: fairseq projects every position through the LM head and lets nll_loss ignore pad targets.
Rows of log_softmax are independent and ignored rows contribute exactly 0, so projecting only the
non-pad-target rows gives the same loss (up to float summation order in the last bits) at a
fraction of the LM-head cost. That is what we do.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from omegaconf import II

from fairseq.criterions.fairseq_criterion import register_criterion
from fairseq.criterions.masked_lm import MaskedLmLoss
from fairseq.dataclass import FairseqDataclass


@dataclass
class CrossEntropyCriterionConfig(FairseqDataclass):
    sentence_avg: bool = II("optimization.sentence_avg")


@register_criterion("cross_entropy", dataclass=CrossEntropyCriterionConfig)
class CrossEntropyCriterion(MaskedLmLoss):
    """MaskedLmLoss with fairseq's cross_entropy denominator: ntokens (or nsentences with --sentence-avg)."""

    def __init__(self, task, sentence_avg: bool = False):
        super().__init__(task)
        self.sentence_avg = bool(sentence_avg)

    def sample_size(self, sample, masked: torch.Tensor):
        return sample["nsentences"] if self.sentence_avg else sample["ntokens"]

    def forward(self, model, sample, reduce: bool = True):
        out = super().forward(model, sample, reduce)
        if self.sentence_avg:  # fairseq then also logs the per-token nll
            out[2]["nll_loss"] = out[2]["loss"]
        return out
