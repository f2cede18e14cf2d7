"""A checkpoint checked against the run that loads it, before anything is loaded.

A model of another size would otherwise fail inside load_state_dict as a long traceback, and a
resume whose data layout changed (--tokens-per-sample or --seq-len-schedule, --sample-break-mode) would continue at a
batch position that indexes different samples than the ones it counted. Each is one ValueError
naming the checkpoint, the mismatch and what to do.
"""
from __future__ import annotations

import re
from typing import Dict, Optional

from fairseq import seq_len_schedule
from fairseq.distributed import wrap

# Flags that change which samples the data iterator's saved position refers to.
LAYOUT_FLAGS = (("--tokens-per-sample", "tokens_per_sample"), ("--sample-break-mode", "sample_break_mode"))


def check_model_shapes(model_state: Dict, model, path: str) -> None:
    """The checkpoint has the model's number of layers, and every parameter it shares with the model
    has the model's shape (else load_state_dict would fail as a traceback).

    Classification heads are left out of the shapes: the model re-creates those to the checkpoint's sizes.
    """
    ours = wrap.unwrap(model).state_dict()
    bad = [(k, tuple(v.shape), tuple(ours[k].shape)) for k, v in model_state.items()
           if not k.startswith("classification_heads.") and k in ours and hasattr(v, "shape")
           and tuple(v.shape) != tuple(ours[k].shape)]
    if bad:
        key, theirs, mine = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise ValueError(f"{path}: {key} has shape {theirs} in the checkpoint but {mine} in this model{more}; "
                         f"it was trained with another model size (--arch, --encoder-* flags)")
    theirs_n, ours_n = _layers(model_state), _layers(ours)
    if theirs_n != ours_n:
        raise ValueError(f"{path}: the checkpoint has {theirs_n} encoder layers but this model has {ours_n}; it was "
                         "trained with another model size (--arch, --encoder-layers)")


def _layers(state: Dict) -> int:
    """The number of encoder layers a state dict holds (keys '...layers.<i>....')."""
    found = {int(m.group(1)) for m in (re.search(r"\.layers\.(\d+)\.", k) for k in state) if m}
    return max(found) + 1 if found else 0


def check_optimizer_history(history, path: str) -> Dict:
    """The last entry of a checkpoint's optimizer_history, which a resume reads: fairseq's list of dicts,
    the last with an integer num_updates; anything else would resume silently at update 0."""
    last = history[-1] if isinstance(history, list) and history else None
    if not (isinstance(history, list) and all(isinstance(h, dict) for h in history) and isinstance(last, dict)
            and isinstance(last.get("num_updates"), int) and last["num_updates"] >= 0):
        shown = repr(history)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        raise ValueError(f"{path}: optimizer_history is not fairseq's list of dicts ending with num_updates "
                         f"(got {shown}); pass --reset-optimizer to start the optimizer and the update count over")
    return last


def saved_flag(state: Dict, name: str) -> Optional[object]:
    """The value a checkpoint was trained with, from its cfg (task, then model section) or legacy args."""
    cfg = state.get("cfg")
    if isinstance(cfg, dict):
        for section in ("task", "model"):
            sec = cfg.get(section)
            value = sec.get(name) if isinstance(sec, dict) else getattr(sec, name, None)
            if value is not None:
                return value
    return getattr(state.get("args"), name, None)


def saved_block_length(state: Dict, num_updates: int) -> Optional[int]:
    """The block length a checkpoint's run had in force at update `num_updates`: --tokens-per-sample, or
    what its --seq-len-schedule gave there (None when the checkpoint does not say)."""
    return seq_len_schedule.length_from(lambda name: saved_flag(state, name), num_updates)


def check_data_layout(state: Dict, args, path: str) -> None:
    """A mid-epoch resume needs the data layout it was saved with; a resume at an epoch boundary does not.

    Under --seq-len-schedule the layout is the block length in force at the saved update (the epoch's
    blocks), under the saved flags and under this run's: a resume across the switch, or with a schedule
    that moves a later switch, keeps the saved position's blocks and passes."""
    itr = (state.get("extra_state") or {}).get("train_iterator") or {}
    position = int(itr.get("iterations_in_epoch", 0) or 0)
    if position == 0:
        return
    if saved_flag(state, "seq_len_schedule") or getattr(args, "seq_len_schedule", None):
        history = state.get("optimizer_history") or [{}]
        updates = int(history[-1].get("num_updates", 0) or 0)
        old, new = saved_block_length(state, updates), seq_len_schedule.length_at(args, updates)
        if old is not None and new is not None and old != new:
            raise ValueError(
                f"{path}: saved {position} batches into epoch {itr.get('epoch')} of blocks of {old} tokens "
                f"(--tokens-per-sample {saved_flag(state, 'tokens_per_sample')}, --seq-len-schedule "
                f"{saved_flag(state, 'seq_len_schedule')} at update {updates}), but this run's flags give blocks of "
                f"{new} tokens there, so that position would point at other samples; resume with the saved "
                f"--tokens-per-sample, --seq-len-schedule and --max-update, or pass --reset-dataloader to start "
                f"the data from epoch 1")
        layout = [f for f in LAYOUT_FLAGS if f[1] != "tokens_per_sample"]
    else:
        layout = LAYOUT_FLAGS
    for flag, name in layout:
        old, new = saved_flag(state, name), getattr(args, name, None)
        if old is not None and new is not None and str(old) != str(new):
            raise ValueError(
                f"{path}: saved {position} batches into epoch {itr.get('epoch')} with {flag} {old}, but this run "
                f"has {flag} {new}, so that position would point at other samples; resume with {flag} {old}, or "
                f"pass --reset-dataloader to start the data from epoch 1")


def check_optimizer_name(last_optim: Dict, optimizer, path: str) -> None:
    """The optimizer state is restored only into the optimizer that saved it (fairseq asserts the same)."""
    saved, ours = last_optim.get("optimizer_name"), type(optimizer).__name__
    if saved is not None and saved != ours:
        raise ValueError(f"{path}: its optimizer state is {saved}'s but this run's --optimizer builds {ours}; "
                         "pass --reset-optimizer to start the optimizer afresh from the checkpoint's weights")
