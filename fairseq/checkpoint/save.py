"""Writing a training checkpoint: what goes into the file and how fairseq's set of files is written.

Contents are fairseq 0.12's (FAIRSEQ_SPEC section 7) with one deliberate difference: our cfg is plain
dicts (cfg["model"] is a dict, not an argparse.Namespace; cfg.py), so our files load with
torch.load(weights_only=True). extra_state also carries `rng` (rng.py) and `loss_scaler`, so a resumed
run continues bit-for-bit, and with --store-ema the weight average as fairseq stores it
(fairseq.models.ema.extra_state).

checkpoint_last.pt (when kept) is written first (files.atomic_save); the other names are atomic copies
of it. A crash or exception mid-save leaves every existing file untouched, and checkpoint_last.pt
always is the newest complete checkpoint: a save that fails (a full disk) after it was written leaves it
complete, one that fails before leaves the previous one. A failed save is one error naming the file
and the cause (save_dir.SaveDirError), on every rank.
"""
from __future__ import annotations

import logging
import os
from typing import Dict, List, Optional

import torch

from fairseq.checkpoint import fsdp_state
from fairseq.checkpoint.cfg import args_to_cfg
from fairseq.checkpoint.files import atomic_copy, atomic_save
from fairseq.checkpoint.names import checkpoint_names, is_better, prune_checkpoints
from fairseq.checkpoint.rng import rng_state
from fairseq.checkpoint.save_dir import SaveDirError
from fairseq.distributed import collectives, wrap
from fairseq.models import ema as ema_state

logger = logging.getLogger(__name__)


def model_state(model) -> Dict[str, torch.Tensor]:
    """fairseq-keyed fp32 CPU state dict (a collective under FSDP: every rank must call it)."""
    inner = wrap.unwrap(model)
    if collectives.get_world_size() == 1 or not wrap.is_fsdp(inner):
        sd = inner.fairseq_state_dict()  # fairseq's keys, so real fairseq loads our checkpoints
    else:
        sd = fsdp_state.model_state_dict(model)
    out = {}
    for k, v in sd.items():
        v = v.detach()
        if v.is_floating_point() and v.dtype != torch.float32:
            v = v.float()
        out[k] = v.cpu()
    return out


def build_state(args, trainer, epoch_itr, val_loss: Optional[float], best: Optional[float]) -> Dict:
    extra = {
        "metrics": [],
        "previous_training_time": trainer.cumulative_training_time(),
        "train_iterator": epoch_itr.state_dict() if epoch_itr is not None else None,
        "val_loss": val_loss,
        "rng": rng_state(),
        "loss_scaler": trainer.scaler.state_dict() if trainer.scaler is not None else None,
    }
    if best is not None:
        extra["best"] = best
    if trainer.ema is not None:  # --store-ema: extra_state["ema"] (+ "ema_fp32_params"), as fairseq saves it
        extra.update(ema_state.checkpoint_state(trainer.ema, args.ema_fp32))
    state = {
        "args": None,
        "cfg": args_to_cfg(args),
        "model": model_state(trainer.model),
        "criterion": None,
        "optimizer_history": [{
            "criterion_name": type(trainer.criterion).__name__,
            "optimizer_name": type(trainer.optimizer).__name__,
            "lr_scheduler_state": trainer.lr_scheduler.state_dict(),
            "num_updates": trainer.num_updates,
        }],
        "task_state": trainer.task.state_dict(),
        "extra_state": extra,
    }
    if not args.no_save_optimizer_state:
        opt = fsdp_state.full_optimizer_state(trainer.optimizer.state_dict())  # FSDP: gather shards
        if trainer.scaler is not None:
            opt["loss_scale"] = trainer.scaler.loss_scale
        state["last_optimizer_state"] = opt
    return state


class CheckpointManager:
    """Tracks the best validation metric and writes fairseq's set of files."""

    def __init__(self, args):
        self.args = args
        self.best: Optional[float] = None

    def save(self, trainer, epoch_itr, val_loss: Optional[float], end_of_epoch: bool,
             only_last: bool = False) -> List[str]:
        args = self.args
        if args.no_save:
            return []
        epoch = epoch_itr.epoch
        updates = trainer.num_updates
        names = checkpoint_names(args, epoch, updates, end_of_epoch, val_loss, self.best)
        if only_last:
            names = [n for n in names if n.startswith("checkpoint_last")] or \
                [f"checkpoint_last{getattr(args, 'checkpoint_suffix', '') or ''}.pt"]
        if val_loss is not None and (self.best is None or is_better(args, val_loss, self.best)):
            self.best = val_loss
        if not names:
            return []
        state = build_state(args, trainer, epoch_itr, val_loss, self.best)  # collective under FSDP
        failure = None
        if collectives.is_master():
            paths = [os.path.join(args.save_dir, n) for n in names]
            failure = _write(state, paths, updates)
            if failure is None:
                logger.info(f"saved checkpoint {paths[0]} (epoch {epoch} @ {updates} updates, score {val_loss})"
                            + (f"; copied to {', '.join(os.path.basename(p) for p in paths[1:])}"
                               if paths[1:] else ""))
                prune_checkpoints(args)
        failure = collectives.broadcast_object(failure)  # also the barrier: every rank waits for the write
        if failure is not None:
            raise SaveDirError(failure)
        return names


def _write(state: Dict, paths: List[str], updates: int) -> Optional[str]:
    """Write `state` to paths (checkpoint_last.pt first, the rest copied from it); the failure as one
    line naming the file and the cause, or None."""
    order = sorted(paths, key=lambda p: not os.path.basename(p).startswith("checkpoint_last"))
    done = []
    for p in order:
        try:
            if done:
                atomic_copy(done[0], p)
            else:
                atomic_save(state, p)
        except OSError as e:
            left = (f"{os.path.basename(done[0])} (update {updates}) is complete"
                    if done and os.path.basename(done[0]).startswith("checkpoint_last")
                    else "the previous checkpoints are unchanged")
            return f"could not save checkpoint {p}: {e.strerror or e}; {left}"
        done.append(p)
    return None
