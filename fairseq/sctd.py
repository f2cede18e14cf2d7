"""The token-dropping train step, with ScTD's semantic-consistency pass (Zhong et al. 2023; SPEC section 3).

Every update runs the token-dropping model. On ScTD updates (update_num % Fi == 0) the same batch also
goes through the full model, and the loss becomes

    L = L_mlm(drop) + w_full * L_mlm(full) + lambda * (KL_local + KL_global)
    KL_x = sum over sequences of KL( softmax(h_full_x[<s>]) || softmax(h_drop_x[<s>]) )   (softmax over C)

Normalisation. Criteria return *summed* losses and the trainer divides the gradients by the summed
sample_size S (masked tokens for masked_lm, ntokens for cross_entropy). So that the division yields the
formula above, the returned loss is

    loss = loss_drop + w_full * loss_full * (S_drop / S_full) + lambda * S_drop * (KL_local + KL_global)

With one micro-batch on one rank this is exactly L * S. With --update-freq n or several ranks, the
MLM terms are exact token means over the global batch and the KL term becomes the S-weighted average
of the per-micro-batch KL sums (sum_i S_i * KL_i / sum_i S_i), the natural generalisation (the total S
is not known while the first micro-batch runs). Gradients flow through both passes.

The importance table is fed from the token-dropping pass only (one loss per masked position, keyed by
its target id); the trainer's after_update -> task -> importance.apply() turns it into the EMA.
"""
from __future__ import annotations

import contextlib
import math
from typing import Dict, List

import torch
import torch.nn.functional as F

from fairseq.tasks.base import backward

LOG2 = math.log(2.0)
SCTD_KEYS = ("sctd_kl_local", "sctd_kl_global", "sctd_full_loss", "sctd_full_sample_size", "sctd_nsentences",
             "sctd_passes")


def cls_kl(h_full: torch.Tensor, h_drop: torch.Tensor) -> torch.Tensor:
    """sum_b KL(softmax(h_full[b]) || softmax(h_drop[b])), softmax over the hidden dim, in fp32."""
    log_p_full = F.log_softmax(h_full.float(), dim=-1)
    log_p_drop = F.log_softmax(h_drop.float(), dim=-1)
    return F.kl_div(log_p_drop, log_p_full, reduction="sum", log_target=True)


def _autocast_context(task, optimizer):
    """The same autocast the plain step uses: task.autocast_context(optimizer) when the task offers it."""
    fn = getattr(task, "autocast_context", None)
    return fn(optimizer) if callable(fn) else contextlib.nullcontext()


def compute_loss(dropper, sample, model, criterion, update_num: int, accumulate: bool = True):
    """Forward part of the step: returns (loss, sample_size, logging_output). No backward."""
    keep = dropper.keep_positions(sample["net_input"]["src_tokens"])
    loss_drop, sample_size, log, extra = criterion(model, sample, token_drop_keep=keep, return_extra=True)
    if accumulate:
        dropper.importance.accumulate(extra["targets"].detach(), extra["token_nll"].detach())
    log = dict(log)
    loss = loss_drop
    if dropper.is_sctd_update(update_num):
        loss_full, size_full, _, extra_full = criterion(model, sample, token_drop_keep=None, return_extra=True)
        kl_local = cls_kl(extra_full["cls_local"], extra["cls_local"])
        kl_global = cls_kl(extra_full["cls_global"], extra["cls_global"])
        s_drop = float(sample_size)
        s_full = float(size_full) if float(size_full) > 0 else 1.0
        if dropper.full_mlm_weight != 0.0:
            loss = loss + dropper.full_mlm_weight * loss_full * (s_drop / s_full)
        loss = loss + dropper.sctd_weight * s_drop * (kl_local + kl_global)
        log.update({
            "sctd_kl_local": float(kl_local.detach()),
            "sctd_kl_global": float(kl_global.detach()),
            "sctd_full_loss": float(loss_full.detach()),
            "sctd_full_sample_size": float(size_full),
            "sctd_nsentences": int(sample["net_input"]["src_tokens"].size(0)),
            "sctd_passes": 1,
        })
    return loss, sample_size, log


def train_step(task, sample, model, criterion, optimizer, update_num, ignore_grad=False):
    """Token-dropping (+ ScTD) replacement of MaskedLMTask.train_step; does the backward itself."""
    dropper = task.token_dropper
    model.train()
    if hasattr(model, "set_num_updates"):
        model.set_num_updates(update_num)
    with _autocast_context(task, optimizer):
        loss, sample_size, log = compute_loss(dropper, sample, model, criterion, update_num,
                                              accumulate=not ignore_grad)
    if ignore_grad:
        loss = loss * 0
    backward(optimizer, loss)
    return loss, sample_size, log


def reduce_metrics(logging_outputs: List[Dict]) -> Dict[str, float]:
    """Aggregate the ScTD keys: KL per sequence (nats) and the full-pass MLM loss in bits per target.

    Returns {} when no micro-batch in `logging_outputs` ran the full pass.
    """
    tot = {k: sum(float(lo.get(k, 0.0)) for lo in logging_outputs) for k in SCTD_KEYS}
    if tot["sctd_passes"] <= 0:
        return {}
    n = max(tot["sctd_nsentences"], 1.0)
    return {
        "sctd_kl_local": tot["sctd_kl_local"] / n,
        "sctd_kl_global": tot["sctd_kl_global"] / n,
        "sctd_full_loss": tot["sctd_full_loss"] / max(tot["sctd_full_sample_size"], 1.0) / LOG2,
    }
