"""The cfg a checkpoint stores, and back: fairseq's grouped config as plain dicts.

fairseq 0.12 saves `cfg` as groups (common, dataset, optimization, checkpoint, model, task, criterion,
optimizer, lr_scheduler, ...). We build the same groups from the flat argparse Namespace, asking the
training parser which group each flag belongs to, but store plain dicts (no argparse.Namespace, no
omegaconf) so the file loads with torch.load(weights_only=True). cfg["model"] holds every flat argument,
which is what model_args_from_cfg reads back (for fairseq's own files too, whose model is a Namespace).
fairseq.dataclass.utils.convert_namespace_to_omegaconf wraps args_to_cfg in omegaconf for the hub.
"""
from __future__ import annotations

import argparse
from typing import Dict

from fairseq import options
from fairseq.data import encoders

# parser group title -> fairseq cfg group
_GROUP_OF_TITLE = {
    "common": "common", "dataset": "dataset", "distributed_training": "distributed_training",
    "optimization": "optimization", "checkpoint": "checkpoint", "model": "model", "task": "task",
    "token dropping / ScTD": "task", "criterion": "criterion", "optimizer": "optimizer",
    "lr_scheduler": "lr_scheduler", "common_eval": "common_eval", "bpe": "bpe", "tokenizer": "tokenizer",
    "EMA configuration": "ema",
}
CFG_GROUPS = ("common", "common_eval", "distributed_training", "dataset", "optimization", "checkpoint",
              "bmuf", "generation", "eval_lm", "interactive", "model", "task", "criterion", "optimizer",
              "lr_scheduler", "scoring", "bpe", "tokenizer", "ema")


def _plain(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def args_to_cfg(args: argparse.Namespace) -> Dict[str, object]:
    """fairseq's grouped cfg as plain dicts (weights_only-loadable); cfg['model'] holds every flat arg."""
    parser = options.get_training_parser(getattr(args, "task", options.DEFAULT_TASK))
    # the parser only tells which group each flag belongs to: a checkpoint's args without an optimizer
    # (an imported model) are grouped with adam's flags
    names = argparse.Namespace(**{**vars(args), "optimizer": getattr(args, "optimizer", None) or "adam"})
    try:
        options.add_choice_args(parser, names)
    except (ValueError, AttributeError):
        pass
    flat = {k: _plain(v) for k, v in vars(args).items()}
    cfg: Dict[str, object] = {"_name": None}
    for group in CFG_GROUPS:
        cfg[group] = {"_name": None}
    for grp in parser._action_groups:
        target = _GROUP_OF_TITLE.get(grp.title)
        if target is None or target == "model":
            continue
        for action in grp._group_actions:
            if action.dest in flat:
                cfg[target][action.dest] = flat[action.dest]
    if "data" in flat:
        cfg["task"]["data"] = flat["data"]
    cfg["task"]["_name"] = flat.get("task")
    cfg["criterion"]["_name"] = flat.get("criterion")
    cfg["optimizer"]["_name"] = flat.get("optimizer")
    cfg["lr_scheduler"]["_name"] = flat.get("lr_scheduler")
    for kind in ("bpe", "tokenizer"):  # every field of the chosen one's dataclass, wherever its flag was added
        cfg[kind].update({k: flat[k] for k in encoders.config_fields(kind, flat.get(kind)) if k in flat})
        cfg[kind]["_name"] = flat.get(kind)
    for g in ("optimizer", "lr_scheduler"):
        cfg[g]["lr"] = flat.get("lr")
    cfg["model"] = dict(flat, _name=flat.get("arch"))
    return cfg


def model_args_from_cfg(cfg) -> argparse.Namespace:
    """The flat model Namespace from a checkpoint cfg: ours (dict) or fairseq's (argparse.Namespace)."""
    if cfg is None:
        raise ValueError("checkpoint has no cfg: cannot rebuild the model")
    model = cfg.get("model") if isinstance(cfg, dict) else getattr(cfg, "model", None)
    if isinstance(model, argparse.Namespace):
        flat = dict(vars(model))
    elif isinstance(model, dict):
        flat = dict(model)
    else:
        raise ValueError(f"checkpoint cfg['model'] has unexpected type {type(model).__name__}")
    if "arch" not in flat and flat.get("_name"):
        flat["arch"] = flat["_name"]
    flat.pop("_name", None)
    return argparse.Namespace(**flat)
