"""fairseq.dataclass.utils: parsed arguments as fairseq's grouped omegaconf config, and the flag generator."""
from __future__ import annotations

import argparse

from omegaconf import DictConfig, OmegaConf

from fairseq.checkpoint.cfg import args_to_cfg
from fairseq.dataclass.flags import gen_parser_from_dataclass  # noqa: F401  (fairseq's public name)


def convert_namespace_to_omegaconf(args: argparse.Namespace) -> DictConfig:
    """fairseq's cfg for `args`: groups common, dataset, optimization, checkpoint, distributed_training,
    model, task, criterion, optimizer, lr_scheduler, ... (cfg.model holds the model's flat arguments)."""
    return OmegaConf.create(args_to_cfg(args))
