"""The token-dropping train step, with ScTD's semantic-consistency pass (Zhong et al. 2023; SPEC section 3).

Dropping updates run the token-dropping model. On ScTD updates (update_num % Fi == 0) the same batch
also goes through the full model, and the loss of the micro-batch becomes

    loss = loss_drop + w_full * loss_full * (S_drop / S_full) + lambda * (KL_local + KL_global)
    KL_x = sum over sequences of KL( softmax(h_full_x[<s>]) || softmax(h_drop_x[<s>]) )   (softmax over C)

loss_drop and loss_full are the criterion's *summed* MLM losses, and the trainer divides the summed
gradient of all micro-batches and ranks by the total sample size S (masked tokens under masked_lm,
ntokens under cross_entropy). That is exactly what the published code (WHU-ZQH/ScTD) optimises:
lambda * summed KL added to the summed MLM loss, then divided by S, so the KL weight per sequence is
lambda / S (--sctd-kl-reduction reference, the default). With --sctd-kl-reduction mean the KL term is
lambda * S_drop * mean over sequences of KL, i.e. after the division mean MLM loss + lambda * mean KL
on one micro-batch (and the S-weighted average of the per-micro-batch means on several).
The full-pass MLM term is scaled by S_drop / S_full so that w_full weighs a mean full loss. With
w_full = 0 (the published setting) the full pass computes only what the KL terms read: every position
up to layer L-2, `<s>` alone in the last layer, no LM head (model(..., cls_only=True)); its MLM loss,
sctd_full_loss in the logs, then exists only with w_full > 0.

Full phases (--token-drop-warmup-updates, --token-drop-final-full-updates; TokenDropper.is_full_update)
run only the full model, with no ScTD pass. The importance table is fed from the pass whose loss is
trained on, the dropping pass (or the full pass in full phases): one loss per masked position, keyed
by its target id; the trainer's after_update -> task -> importance.apply() turns it into the EMA.

How the criterion takes part (any fairseq-style criterion, `criterion(model, sample)`, a plugin's
subclass of MaskedLmLoss included): the kept positions travel inside the sample, as
sample["net_input"]["token_drop_keep"], so the criterion's own `model(**sample["net_input"], ...)`
runs the dropping forward. What the step needs besides the loss is read from that same forward, by
`ForwardCapture` (a forward hook on the model): its logits for the masked positions (the per-token
NLLs for the importance table are recomputed from them, without gradient, with the criterion's own
fp32 log_softmax + nll_loss, so they are the numbers the loss summed) and its extra["cls_local"] /
extra["cls_global"] (the KL terms, with gradient).

Every step also logs td_positions (B * T) and td_dropped (positions a dropping layer did not
process, padding included: B * (T - K), 0 in full phases); the train logs turn them into drop_rate.
The kept positions come from the dropper's selector (fairseq.token_selectors): one set [B, K] for
Hou's split, or one per layer [n, B, K] (random-LTD); the ScTD pass composes with either.
"""
from __future__ import annotations

import contextlib
import math
from typing import Dict, List

import torch
import torch.nn.functional as F

from fairseq.distributed import wrap
from fairseq.optim.fairseq_optimizer import backward

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


def with_kept_positions(sample: dict, keep) -> dict:
    """`sample` whose net_input also carries token_drop_keep (the model's dropping forward); `sample`
    itself when keep is None (the full model)."""
    if keep is None:
        return sample
    return {**sample, "net_input": {**sample["net_input"], "token_drop_keep": keep}}


class ForwardCapture:
    """Records the output (logits, extra) of every forward of `model` (unwrapped from DDP/FSDP) while
    the context is open; `.logits` and `.extra` are those of the last call."""

    def __init__(self, model):
        self.module = wrap.unwrap(model)
        self.logits, self.extra, self._handle = None, None, None
        self.calls, self.dropping_calls = 0, 0

    def _hook(self, module, args, kwargs, output):
        self.logits, self.extra = output[0], output[1]
        self.calls += 1
        self.dropping_calls += kwargs.get("token_drop_keep") is not None

    def __enter__(self):
        self._handle = self.module.register_forward_hook(self._hook, with_kwargs=True)
        return self

    def check_dropping(self, criterion) -> None:
        """The criterion must have run the dropping forward: model(**sample["net_input"], ...) (fairseq's
        MaskedLmLoss does). One that passes only src_tokens would silently train the full model."""
        if self.dropping_calls != 1:
            raise ValueError(f"--token-drop: criterion {type(criterion).__name__} ran {self.calls} forward(s) of the "
                             f"model, {self.dropping_calls} with the kept positions; it must call the model once "
                             f"as model(**sample['net_input'], ...), which carries them")

    def __exit__(self, *exc):
        self._handle.remove()

    def token_nll(self, sample, pad: int):
        """(targets [N], NLL per masked position [N], nats) from the captured logits, no gradient."""
        target = sample["target"]
        masked = target.ne(pad)
        logits = self.logits.detach()
        if logits.dim() == 3:  # a model that projected every position: keep the masked rows
            logits = logits[masked]
        targets = target[masked]
        if logits.size(0) != targets.numel():  # fairseq's CPU rule: no masked position -> all projected
            return targets[:0], logits.new_zeros(0, dtype=torch.float32)
        with torch.no_grad():
            lprobs = F.log_softmax(logits.reshape(-1, logits.size(-1)), dim=-1, dtype=torch.float32)
            return targets, F.nll_loss(lprobs, targets, ignore_index=pad, reduction="none")


def compute_loss(dropper, sample, model, criterion, update_num: int, accumulate: bool = True):
    """Forward part of the step: returns (loss, sample_size, logging_output). No backward."""
    src = sample["net_input"]["src_tokens"]
    keep = None if dropper.is_full_update(update_num) else dropper.keep_positions(src, sample["id"], update_num)
    with ForwardCapture(model) as drop_pass:
        loss_drop, sample_size, log = criterion(model, with_kept_positions(sample, keep))
    if keep is not None:
        drop_pass.check_dropping(criterion)
    extra = drop_pass.extra
    if accumulate:
        targets, token_nll = drop_pass.token_nll(sample, dropper.pad)
        dropper.importance.accumulate(targets, token_nll)
    log = dict(log)
    log["td_positions"] = src.numel()
    log["td_dropped"] = 0 if keep is None else src.numel() - src.size(0) * keep.size(-1)  # per dropping layer
    loss = loss_drop
    if dropper.is_sctd_update(update_num):
        s_drop = float(sample_size)
        if dropper.full_mlm_weight != 0.0:
            with ForwardCapture(model) as full_pass:
                loss_full, size_full, _ = criterion(model, sample)
            extra_full = full_pass.extra
            s_full = float(size_full) if float(size_full) > 0 else 1.0
            loss = loss + dropper.full_mlm_weight * loss_full * (s_drop / s_full)
            log.update({"sctd_full_loss": float(loss_full.detach()), "sctd_full_sample_size": float(size_full)})
        else:  # the KL terms read only <s>: no LM head, and <s> alone in the last layer
            _, extra_full = model(src, cls_only=True)
        kl_local = cls_kl(extra_full["cls_local"], extra["cls_local"])
        kl_global = cls_kl(extra_full["cls_global"], extra["cls_global"])
        kl = kl_local + kl_global
        if dropper.kl_reduction == "mean":
            kl = kl * (s_drop / src.size(0))
        loss = loss + dropper.sctd_weight * kl
        log.update({
            "sctd_kl_local": float(kl_local.detach()),
            "sctd_kl_global": float(kl_global.detach()),
            "sctd_nsentences": int(src.size(0)),
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
    """Aggregate the ScTD keys: KL per sequence (nats) and, when it was trained on (w_full > 0), the
    full pass's MLM loss in bits per target.

    Returns {} when no micro-batch in `logging_outputs` ran the full pass.
    """
    tot = {k: sum(float(lo.get(k, 0.0)) for lo in logging_outputs) for k in SCTD_KEYS}
    if tot["sctd_passes"] <= 0:
        return {}
    n = max(tot["sctd_nsentences"], 1.0)
    out = {"sctd_kl_local": tot["sctd_kl_local"] / n, "sctd_kl_global": tot["sctd_kl_global"] / n}
    if tot["sctd_full_sample_size"] > 0:  # the full pass's MLM loss exists only when it is trained on
        out["sctd_full_loss"] = tot["sctd_full_loss"] / tot["sctd_full_sample_size"] / LOG2
    return out
