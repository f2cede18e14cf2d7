"""fairseq's grouped training config back to the flat argparse Namespace this package's code reads.

fairseq's own entry points take a cfg (cfg.common, cfg.dataset, ..., cfg.model, cfg.task); fairseq's
tests and scripts build one with convert_namespace_to_omegaconf and pass it to
distributed_utils.call_main(cfg, train.main). as_namespace turns it into one Namespace: every group's
keys at top level (cfg.model first, since ours carries every flat argument; the other groups after
it, so a value edited in its own group wins), and the groups' `_name`s as --task, --arch, --criterion,
--optimizer and --lr-scheduler. A Namespace passes through unchanged.
"""
from __future__ import annotations

import argparse

from omegaconf import DictConfig, OmegaConf

_NAMES = {"model": "arch", "task": "task", "criterion": "criterion", "optimizer": "optimizer",
          "lr_scheduler": "lr_scheduler"}


def as_namespace(cfg) -> argparse.Namespace:
    if isinstance(cfg, argparse.Namespace):
        return cfg
    plain = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    groups = [g for g, v in plain.items() if isinstance(v, dict)]
    flat = {}
    for group in sorted(groups, key=lambda g: g != "model"):
        values = plain[group] if isinstance(plain[group], dict) else vars(plain[group])
        flat.update({k: v for k, v in values.items() if k != "_name"})
    for group, name in _NAMES.items():
        chosen = (plain.get(group) or {}).get("_name")
        if chosen is not None:
            flat[name] = chosen
    return argparse.Namespace(**flat)
