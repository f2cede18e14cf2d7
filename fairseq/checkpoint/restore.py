"""Resuming from a checkpoint: which file (fairseq's --restore-file / --finetune-from-model rules),
checked against this run (vocabulary, shapes, data layout: resume_checks.py), then loaded into the
trainer: model, optimizer, schedule, update count, loss scaler, weight EMA, task state, meters and RNG."""
from __future__ import annotations

import logging
import os
import re
from typing import Dict

from fairseq.checkpoint import fsdp_state, resume_checks
from fairseq.checkpoint.files import load_checkpoint_file
from fairseq.checkpoint.rng import set_rng_state
from fairseq.distributed import wrap
from fairseq.file_io import PathManager
from fairseq.models import ema as ema_state

logger = logging.getLogger(__name__)
EMBED_KEY = "encoder.sentence_encoder.embed_tokens.weight"


def resolve_restore_path(args, suffix: str = ""):
    """(path, finetune: bool) by fairseq's --restore-file / --finetune-from-model rules
    (checkpoint_utils.load_checkpoint, which then hands `path` to Trainer.load_checkpoint).

    - The default --restore-file is checkpoint_last<suffix>.pt in --save-dir, returned whether or not it
      exists yet (Trainer.load_checkpoint starts from scratch without it). While it does not exist,
      --finetune-from-model FILE is loaded instead, with everything reset (finetune True).
    - Another --restore-file is looked up in --save-dir first, then as given; it must exist (fairseq
      would start from scratch: docs/compatibility.md), and --finetune-from-model beside it is an error.
    Existence is asked of fairseq.file_io.PathManager, as fairseq does.
    """
    finetune = getattr(args, "finetune_from_model", None)
    if args.restore_file == "checkpoint_last.pt":
        path = os.path.join(args.save_dir, f"checkpoint_last{suffix}.pt")
        if finetune is None or PathManager.exists(path):
            return path, False
        if not PathManager.exists(finetune):
            raise FileNotFoundError(f"--finetune-from-model: checkpoint not found: {finetune}")
        logger.info(f"loading pretrained model from {finetune}: optimizer, lr scheduler, meters, dataloader "
                    "will be reset")
        return finetune, True
    if finetune:
        raise ValueError("--finetune-from-model and --restore-file (non-default value) can not be specified together")
    rf = args.restore_file.replace(".pt", suffix + ".pt") if suffix else args.restore_file
    candidates = [rf] if os.path.isabs(rf) else [os.path.join(args.save_dir, rf), rf]
    for c in candidates:
        if PathManager.isfile(c):
            return c, False
    raise FileNotFoundError(f"--restore-file not found: {rf} (looked in {', '.join(candidates)})")


def report_missing(path: str, save_dir: str) -> None:
    """No checkpoint at `path`: training starts from scratch; say so, louder when --save-dir holds other
    checkpoints (e.g. checkpoint_last.pt was deleted) that the user may have meant to resume from."""
    others = sorted(n for n in os.listdir(save_dir) if re.fullmatch(r"checkpoint.*\.pt", n)) \
        if os.path.isdir(save_dir) else []
    if others:
        logger.warning(f"no {os.path.basename(path)} in {save_dir}, but {', '.join(others)} "
                       f"{'is' if len(others) == 1 else 'are'} there; training from scratch (pass "
                       "--restore-file NAME to resume from one)")
    else:
        logger.info(f"no existing checkpoint found at {path}; training from scratch")


def check_vocab(state: Dict, model, path: str) -> None:
    embed = state["model"].get(EMBED_KEY)
    ours = wrap.unwrap(model).state_dict().get(EMBED_KEY)
    if embed is not None and ours is not None and embed.shape[0] != ours.shape[0]:
        raise ValueError(f"{path}: the checkpoint's vocabulary has {embed.shape[0]} entries but the dictionary "
                         f"(with <mask>) gives {ours.shape[0]}; use the dict.txt the checkpoint was trained with")


def load_into_trainer(trainer, path: str, reset_optimizer=False, reset_lr_scheduler=False,
                      reset_meters=False, restore_rng=True) -> Dict:
    """Load model (+ optimizer, schedule, num_updates, scaler, task state unless reset); return extra_state."""
    state = load_checkpoint_file(path)
    check_vocab(state, trainer.model, path)
    resume_checks.check_model_shapes(state["model"], trainer.model, path)
    if restore_rng:  # a resume that continues the saved data position (not --reset-dataloader, not finetuning)
        resume_checks.check_data_layout(state, trainer.args, path)
    fsdp_state.load_model_state_dict(trainer.model, state["model"], strict=True)
    ours = isinstance(state.get("cfg"), dict) and isinstance(state["cfg"].get("model"), dict)
    extra = state.get("extra_state") or {}
    history = state.get("optimizer_history") or []
    if not reset_meters:  # before the schedule is set: --lr-schedule-clock time reads it
        trainer.previous_training_time = float(extra.get("previous_training_time", 0.0) or 0.0)
    if not reset_optimizer and history:
        last = resume_checks.check_optimizer_history(history, path)
        opt_state = state.get("last_optimizer_state")
        if ours and opt_state is not None:
            resume_checks.check_optimizer_name(last, trainer.optimizer, path)
        if opt_state is not None:
            n_saved = sum(len(g["params"]) for g in opt_state["param_groups"])
            if ours and n_saved == len(trainer.params):
                opt_state = fsdp_state.shard_optimizer_state(trainer.params, opt_state)  # FSDP: re-shard
                trainer.optimizer.load_state_dict({k: v for k, v in opt_state.items() if k != "loss_scale"})
            else:
                logger.warning(f"{path}: optimizer state not restored (it indexes {n_saved} parameters, "
                               f"we have {len(trainer.params)}); pass --reset-optimizer to silence this")
        if not reset_lr_scheduler and last.get("lr_scheduler_state"):
            trainer.lr_scheduler.load_state_dict(last["lr_scheduler_state"])
        trainer.set_num_updates(int(last.get("num_updates", 0)))
        if trainer.scaler is not None:
            if extra.get("loss_scaler"):
                trainer.scaler.load_state_dict(extra["loss_scaler"])
            elif opt_state is not None and "loss_scale" in opt_state:
                trainer.scaler.loss_scale = float(opt_state["loss_scale"])
    if trainer.ema is not None:  # restored whatever the --reset-* flags say, as fairseq does
        ema_state.load_checkpoint_state(trainer.ema, extra, state["model"], trainer.args.ema_fp32)
    if state.get("task_state"):
        trainer.task.load_state_dict(state["task_state"])
    if restore_rng and extra.get("rng") is not None:
        set_rng_state(extra["rng"])
    logger.info(f"loaded checkpoint {path} (num_updates {trainer.num_updates})")
    return extra
