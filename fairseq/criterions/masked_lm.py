"""The masked_lm criterion (FAIRSEQ_SPEC section 4.6): summed NLL over masked positions only.

fairseq's class and signature: `MaskedLmLoss(task, tpu=False)`, `forward(model, sample, reduce=True)`
calling `model(**sample["net_input"], masked_tokens=...)`. Only the masked rows go through the LM head
(fairseq's speed trick); gradients are divided by the number of masked tokens (sample_size).
Token dropping needs nothing from the criterion: the kept positions travel in sample["net_input"]
(see fairseq/sctd.py), so a subclass that overrides forward keeps working.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List

import torch
import torch.nn.functional as F
from omegaconf import II

from fairseq.criterions.fairseq_criterion import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass
from fairseq.logging import metrics
from fairseq.logging.meters import get_perplexity

LN2 = math.log(2.0)


def masked_nll(model, sample, pad: int):
    """(summed NLL in nats, masked-position mask [B,T]).

    log_softmax is taken in fp32 (also under autocast), then nll_loss, as fairseq does. On CPU a
    batch without a masked position projects every position (pad targets are ignored), as fairseq.
    """
    target = sample["target"]
    masked = target.ne(pad)
    use_mask = masked if (masked.device.type != "cpu" or bool(masked.any())) else None
    logits = model(**sample["net_input"], masked_tokens=use_mask)[0]
    targets = target[masked] if use_mask is not None else target.reshape(-1)
    lprobs = F.log_softmax(logits.reshape(-1, logits.size(-1)), dim=-1, dtype=torch.float32)
    return F.nll_loss(lprobs, targets.reshape(-1), ignore_index=pad, reduction="sum"), masked


def reduce_mlm_metrics(logging_outputs: List[Dict]) -> Dict[str, float]:
    """loss in bits per sample_size unit, [nll_loss per token when they differ], ppl."""
    def total(key):
        return sum(float(lo.get(key, 0.0)) for lo in logging_outputs)

    loss_sum, sample_size, ntokens = total("loss"), total("sample_size"), total("ntokens")
    out = {"loss": loss_sum / max(sample_size, 1e-12) / LN2 if sample_size else 0.0}
    if sample_size != ntokens and any("nll_loss" in lo for lo in logging_outputs):
        out["nll_loss"] = total("nll_loss") / max(ntokens, 1e-12) / LN2
        out["ppl"] = get_perplexity(out["nll_loss"])
    else:
        out["ppl"] = get_perplexity(out["loss"])
    metrics.log_scalar("loss", out["loss"], sample_size)
    if "nll_loss" in out:
        metrics.log_scalar("nll_loss", out["nll_loss"], ntokens)
    metrics.log_derived("ppl", lambda meters, v=out["ppl"]: v)
    return out


@dataclass
class MaskedLmConfig(FairseqDataclass):
    tpu: bool = II("common.tpu")


@register_criterion("masked_lm", dataclass=MaskedLmConfig)
class MaskedLmLoss(FairseqCriterion):
    def __init__(self, task, tpu: bool = False):
        super().__init__(task)
        self.tpu = tpu

    def sample_size(self, sample, masked: torch.Tensor):
        """The gradient denominator: the number of masked tokens."""
        return masked.int().sum()

    def forward(self, model, sample, reduce: bool = True):
        loss, masked = masked_nll(model, sample, self.padding_idx)
        sample_size = self.sample_size(sample, masked)
        log = {"loss": loss.detach(), "ntokens": sample["ntokens"], "nsentences": sample["nsentences"],
               "sample_size": sample_size}
        return loss, sample_size, log

    @staticmethod
    def reduce_metrics(logging_outputs: List[Dict]) -> Dict[str, float]:
        return reduce_mlm_metrics(logging_outputs)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
