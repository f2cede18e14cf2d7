"""The cross_entropy criterion, fairseq's default (FAIRSEQ_SPEC section 4.7).

On masked-LM samples it sums the NLL of every non-pad target (the masked positions) and divides
the gradients by ntokens (all input tokens) or, with --sentence-avg, by the number of sentences.

Speed: fairseq projects every position through the LM head and lets nll_loss ignore pad targets.
Rows of log_softmax are independent and ignored rows contribute exactly 0, so projecting only the
non-pad-target rows gives the same loss (up to float summation order in the last bits) at a
fraction of the LM-head cost. That is what we do.
"""
from __future__ import annotations

from typing import Dict, List

import torch

from fairseq.criterions.masked_lm import masked_nll, reduce_mlm_metrics


class CrossEntropyCriterion(torch.nn.Module):
    @staticmethod
    def add_args(parser):
        pass

    def __init__(self, args, task):
        super().__init__()
        self.padding_idx = task.target_dictionary.pad() if hasattr(task, "target_dictionary") \
            else task.source_dictionary.pad()
        self.sentence_avg = bool(getattr(args, "sentence_avg", False))

    def forward(self, model, sample, reduce: bool = True, token_drop_keep=None, return_extra: bool = False):
        loss, masked, targets, token_nll, extra = masked_nll(
            model, sample, self.padding_idx, token_drop_keep, per_token=return_extra)
        sample_size = sample["nsentences"] if self.sentence_avg else sample["ntokens"]
        log = {"loss": loss.detach(), "ntokens": sample["ntokens"], "nsentences": sample["nsentences"],
               "sample_size": sample_size}
        if sample_size != sample["ntokens"]:
            log["nll_loss"] = loss.detach()
        if not return_extra:
            return loss, sample_size, log
        return loss, sample_size, log, {"targets": targets, "token_nll": token_nll,
                                        "cls_local": extra.get("cls_local"), "cls_global": extra.get("cls_global")}

    @staticmethod
    def reduce_metrics(logging_outputs: List[Dict]) -> Dict[str, float]:
        return reduce_mlm_metrics(logging_outputs)
