"""The masked_lm criterion (FAIRSEQ_SPEC section 4.6): summed NLL over masked positions only.

Only the masked rows go through the LM head (fairseq's speed trick); gradients are divided by the
number of masked tokens (sample_size). With return_extra the per-token NLLs, their targets and the
[CLS] states are returned too, for the token-importance table and ScTD's KL terms.
"""
from __future__ import annotations

import math
from typing import Dict, List

import torch
import torch.nn.functional as F

from fairseq import sctd
from fairseq.logging.meters import get_perplexity

LN2 = math.log(2.0)


def _model_call(model, sample, masked_tokens, token_drop_keep):
    kwargs = {"masked_tokens": masked_tokens}
    if token_drop_keep is not None:
        kwargs["token_drop_keep"] = token_drop_keep
    return model(sample["net_input"]["src_tokens"], **kwargs)


def masked_nll(model, sample, pad: int, token_drop_keep=None, per_token: bool = False):
    """(summed NLL in nats, masked mask, targets, per-token NLL or None, model extra).

    log_softmax is taken in fp32 (also under autocast), then nll_loss, as fairseq does.
    """
    target = sample["target"]
    masked = target.ne(pad)
    use_mask = masked if (masked.device.type != "cpu" or bool(masked.any())) else None
    logits, extra = _model_call(model, sample, use_mask, token_drop_keep)
    targets = target[masked] if use_mask is not None else target.reshape(-1)
    lprobs = F.log_softmax(logits.reshape(-1, logits.size(-1)), dim=-1, dtype=torch.float32)
    if per_token:
        token_nll = F.nll_loss(lprobs, targets.reshape(-1), ignore_index=pad, reduction="none")
        if use_mask is None:
            token_nll, targets = token_nll[:0], targets[:0]
        return token_nll.sum(), masked, targets, token_nll, extra
    loss = F.nll_loss(lprobs, targets.reshape(-1), ignore_index=pad, reduction="sum")
    return loss, masked, targets, None, extra


def reduce_mlm_metrics(logging_outputs: List[Dict]) -> Dict[str, float]:
    """loss in bits per sample_size unit, [nll_loss per token when they differ], ppl, ScTD extras."""
    def total(key):
        return sum(float(lo.get(key, 0.0)) for lo in logging_outputs)

    loss_sum, sample_size, ntokens = total("loss"), total("sample_size"), total("ntokens")
    out = {"loss": loss_sum / max(sample_size, 1e-12) / LN2 if sample_size else 0.0}
    if sample_size != ntokens and any("nll_loss" in lo for lo in logging_outputs):
        out["nll_loss"] = total("nll_loss") / max(ntokens, 1e-12) / LN2
        out["ppl"] = get_perplexity(out["nll_loss"])
    else:
        out["ppl"] = get_perplexity(out["loss"])
    out.update(sctd.reduce_metrics(logging_outputs))
    return out


class MaskedLmLoss(torch.nn.Module):
    @staticmethod
    def add_args(parser):
        pass

    def __init__(self, args, task):
        super().__init__()
        self.padding_idx = task.source_dictionary.pad()

    def sample_size(self, sample, masked: torch.Tensor):
        """The gradient denominator: the number of masked tokens."""
        return masked.int().sum()

    def forward(self, model, sample, reduce: bool = True, token_drop_keep=None, return_extra: bool = False):
        loss, masked, targets, token_nll, extra = masked_nll(
            model, sample, self.padding_idx, token_drop_keep, per_token=return_extra)
        sample_size = self.sample_size(sample, masked)
        log = {"loss": loss.detach(), "ntokens": sample["ntokens"], "nsentences": sample["nsentences"],
               "sample_size": sample_size}
        if not return_extra:
            return loss, sample_size, log
        return loss, sample_size, log, {"targets": targets, "token_nll": token_nll,
                                        "cls_local": extra.get("cls_local"), "cls_global": extra.get("cls_global")}

    @staticmethod
    def reduce_metrics(logging_outputs: List[Dict]) -> Dict[str, float]:
        return reduce_mlm_metrics(logging_outputs)
