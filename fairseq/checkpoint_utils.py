"""fairseq.checkpoint_utils: the loading functions fairseq's docs use.

    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([path], arg_overrides={"data": d})
    extra_state, epoch_itr = checkpoint_utils.load_checkpoint(cfg.checkpoint, trainer)   # what fairseq-train resumes
    state = checkpoint_utils.load_ema_from_checkpoint(path)   # a --store-ema run's average as "model"

Files are read by fairseq.checkpoint.load_checkpoint_file (every fairseq 0.9-0.12 layout and ours);
arg_overrides replace the checkpoint's flat arguments (model and task alike, as fairseq's do) before the
task is set up and the models are built; cfg is fairseq's grouped omegaconf config of the first file.
"""
from __future__ import annotations

import ast
import logging
from typing import Dict, List, Optional

import torch  # noqa: F401  (fairseq's module has these names; its tests patch checkpoint_utils.torch.load)

from fairseq import flag_rules, models, tasks
from fairseq.checkpoint.cfg import args_to_cfg, model_args_from_cfg
from fairseq.checkpoint.files import atomic_save, load_checkpoint_file
from fairseq.checkpoint.restore import check_vocab, resolve_restore_path
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.file_io import PathManager  # noqa: F401  (and checkpoint_utils.PathManager.open)
from fairseq.models.ema.extra_state import load_ema_from_checkpoint  # noqa: F401  (fairseq's public name)

logger = logging.getLogger(__name__)


def load_checkpoint(cfg, trainer, **passthrough_args):
    """fairseq's: resume `trainer` as fairseq-train does and return (extra_state, the train epoch iterator).

    cfg: fairseq's cfg.checkpoint or the parsed arguments (save_dir, restore_file, finetune_from_model,
    reset_*, optimizer_overrides). Which file: checkpoint.restore.resolve_restore_path (on a first launch
    --finetune-from-model loads with every --reset-* on). The trainer loads it (Trainer.load_checkpoint;
    no file: None, from scratch); the iterator continues the saved epoch and position unless
    --reset-dataloader, else starts epoch 1 (passthrough_args go to trainer.get_train_iterator). "best" is
    dropped from the returned extra_state when --reset-optimizer or --reset-meters says the best
    validation metric starts over, so a caller can take what is left.
    """
    flag_rules.check_finetune_resets(cfg)
    overrides = ast.literal_eval(cfg.optimizer_overrides) if isinstance(cfg.optimizer_overrides, str) \
        else cfg.optimizer_overrides
    path, finetune = resolve_restore_path(cfg, trainer.checkpoint_suffix)
    reset_optimizer, reset_lr_scheduler, reset_meters, reset_dataloader = (
        (True,) * 4 if finetune else
        (cfg.reset_optimizer, cfg.reset_lr_scheduler, cfg.reset_meters, cfg.reset_dataloader))
    extra_state = trainer.load_checkpoint(path, reset_optimizer, reset_lr_scheduler, overrides,
                                          reset_meters=reset_meters, reset_dataloader=reset_dataloader)
    if extra_state is not None and (reset_optimizer or reset_meters):
        extra_state.pop("best", None)
    if extra_state is not None and not reset_dataloader and extra_state.get("train_iterator"):
        itr_state = extra_state["train_iterator"]
        epoch_itr = trainer.get_train_iterator(epoch=itr_state["epoch"], load_dataset=True, **passthrough_args)
        epoch_itr.load_state_dict(itr_state)
    else:
        epoch_itr = trainer.get_train_iterator(epoch=1, load_dataset=True, **passthrough_args)
    trainer.lr_step(epoch_itr.epoch)
    return extra_state, epoch_itr


def load_checkpoint_to_cpu(path: str, arg_overrides: Optional[Dict] = None, load_on_all_ranks: bool = False) -> dict:
    """The checkpoint's state dict on the CPU (its cfg with arg_overrides applied to cfg['model'])."""
    state = load_checkpoint_file(path)
    if arg_overrides:
        args = model_args_from_cfg(state["cfg"])
        for key, value in arg_overrides.items():
            setattr(args, key, value)
        state["cfg"] = args_to_cfg(args)
    return state


def load_model_ensemble_and_task(filenames: List[str], arg_overrides: Optional[Dict] = None, task=None,
                                 strict: bool = True, suffix: str = "", num_shards: int = 1, state=None):
    """(models, cfg, task): one model per file, built by the (first file's) task and loaded strictly."""
    if num_shards != 1 or suffix:
        raise ValueError("load_model_ensemble_and_task: sharded checkpoints (num_shards/suffix) are not supported")
    ensemble, cfg = [], None
    for filename in filenames:
        file_state = state if state is not None else load_checkpoint_to_cpu(filename, arg_overrides)
        args = model_args_from_cfg(file_state["cfg"])
        args.task = getattr(args, "task", None) or "masked_lm"
        if task is None:
            task = tasks.setup_task(args)
        model = models.build_model(args, task)
        check_vocab(file_state, model, filename)
        model.load_state_dict(file_state["model"], strict=strict)
        ensemble.append(model)
        if cfg is None:
            cfg = convert_namespace_to_omegaconf(args)
    return ensemble, cfg, task


def load_model_ensemble(filenames: List[str], arg_overrides: Optional[Dict] = None, task=None, strict: bool = True,
                        suffix: str = "", num_shards: int = 1, state=None):
    """(models, cfg): load_model_ensemble_and_task without the task."""
    ensemble, cfg, _ = load_model_ensemble_and_task(filenames, arg_overrides, task, strict, suffix, num_shards, state)
    return ensemble, cfg


def save_ema_as_checkpoint(src_path: str, dst_path: str) -> None:
    """Write the EMA weights of checkpoint `src_path` as an ordinary checkpoint at `dst_path` (its "model"),
    so fairseq-validate, the hub and fine-tuning read the average like any model."""
    atomic_save(load_ema_from_checkpoint(src_path), dst_path)
