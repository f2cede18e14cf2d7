"""fairseq-hydra-train: run fairseq-train from a fairseq-style YAML config.

    fairseq-hydra-train --config-dir examples/sctd/config --config-name pretrain_base \
        task.data=/path/to/data-bin optimization.max_update=10
    fairseq-hydra-train -m --config-dir ... --config-name base task.data=DATA optimization.lr=[1e-4],[2e-4]

With -m (hydra's multirun) an override `key=a,b` is a sweep: one training per combination, in turn. Unlike
hydra, nothing changes the working directory: relative paths (task.data, checkpoint.save_dir) mean what
they mean where the command runs (fairseq's own runs go to hydra's outputs/ or multirun/ folders, where a
relative task.data is not found); the jobs of a sweep save to save_dir/0, save_dir/1, ...

Why this is small: a YAML config is just another spelling of a fairseq-train command line. We
compose the YAML with the command-line overrides (OmegaConf), turn every `group.key: value` into
the equivalent `--flag value` (the table below), and parse that argv with the very same parser
fairseq-train uses. So a recipe written as YAML and the same recipe written as a shell command
resolve to equal Namespaces, and there is one source of defaults and validation (fairseq/options.py).

Groups are fairseq's (common, dataset, optimization, checkpoint, model, task, criterion, optimizer,
lr_scheduler, distributed_training, ...) plus `token_drop` for the token-dropping / ScTD flags.
A group's `_name` selects the component (task._name -> --task, model._name -> --arch, ...); a group
given as a bare string is its `_name` (`criterion: masked_lm`).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf

from fairseq import options
from fairseq_cli import train

GROUPS = (
    "common", "common_eval", "distributed_training", "dataset", "optimization", "checkpoint",
    "bmuf", "model", "task", "criterion", "optimizer", "lr_scheduler", "ema", "token_drop",
)
# `_name` of a group -> the flag that selects it.
NAME_FLAGS = {
    "model": "--arch",
    "task": "--task",
    "criterion": "--criterion",
    "optimizer": "--optimizer",
    "lr_scheduler": "--lr-scheduler",
}
# group.key whose flag is not simply "--" + key with "_" -> "-". `None` marks the positional data dir.
SPECIAL_FLAGS = {
    "task.data": None,
    "dataset.batch_size": "--batch-size",
    "dataset.batch_size_valid": "--batch-size-valid",
}
# Keys that fairseq's YAML files carry but that are not fairseq-train flags (hydra's own settings).
IGNORED_TOP_LEVEL = ("hydra", "_name")


def _config_path(config_dir: str | Path, name: str) -> Path:
    directory = Path(config_dir)
    if not directory.is_dir():
        raise FileNotFoundError(f"--config-dir not found: {directory}")
    path = directory / (name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")
    if not path.is_file():
        available = ", ".join(sorted(p.stem for p in directory.glob("*.yaml"))) or "none"
        raise FileNotFoundError(f"--config-name {name!r}: {path} not found (available: {available})")
    return path


def _split_override(item: str) -> tuple[str, str | None]:
    """Hydra override syntax: key=value, +key=value, ++key=value, ~key (delete)."""
    if item.startswith("~"):
        return item[1:].split("=", 1)[0], None
    item = item.lstrip("+")
    if "=" not in item:
        raise ValueError(f"bad override {item!r}: expected group.key=value (or ~group.key)")
    key, value = item.split("=", 1)
    return key, value


def compose(config_dir: str | Path, name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """Load <config_dir>/<name>.yaml and apply hydra-style overrides; interpolations resolved."""
    path = _config_path(config_dir, name)
    cfg = OmegaConf.load(path)
    if not isinstance(cfg, DictConfig):
        raise ValueError(f"{path}: the top level must be a mapping of config groups")
    if "defaults" in cfg:
        raise ValueError(f"{path}: hydra 'defaults' lists are not supported; put all groups in one file")
    for group in list(cfg.keys()):
        if isinstance(cfg[group], str):  # `criterion: masked_lm` means `criterion: {_name: masked_lm}`
            cfg[group] = {"_name": cfg[group]}
    for item in overrides:
        key, value = _split_override(item)
        if value is None:
            parent, _, leaf = key.rpartition(".")
            node = OmegaConf.select(cfg, parent) if parent else cfg
            if node is None or leaf not in node:
                raise ValueError(f"override ~{key}: no such key in {path}")
            del node[leaf]
        else:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([f"{key}={value}"]))
    for group in cfg:
        for key in (cfg[group] if isinstance(cfg[group], DictConfig) else {}):
            if OmegaConf.is_missing(cfg[group], key):
                raise ValueError(f"{path}: {group}.{key} is required (???); pass {group}.{key}=VALUE")
    OmegaConf.resolve(cfg)
    return cfg


def _format_value(group: str, key: str, value: Any) -> str:
    if key == "adam_betas" and isinstance(value, (list, tuple)):
        return "(" + ", ".join(repr(float(v)) for v in value) + ")"
    if isinstance(value, (list, tuple)):  # fairseq list flags (--lr, --update-freq) are comma-separated
        return ",".join(_format_value(group, key, v) for v in value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def flag_for(group: str, key: str) -> str | None:
    """The fairseq-train flag for group.key (None = the positional data directory)."""
    full = f"{group}.{key}"
    if full in SPECIAL_FLAGS:
        return SPECIAL_FLAGS[full]
    if key == "_name":
        return NAME_FLAGS.get(group)
    return "--" + key.replace("_", "-")


def config_to_argv(cfg: DictConfig | dict, source: str = "config") -> list[str]:
    """The fairseq-train argv equivalent to a composed config.

    True booleans become bare flags, False and None are left out (fairseq's boolean flags are
    all store_true with default False), lists become comma-separated values.
    """
    plain = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    data: list[str] = []
    argv: list[str] = []
    for group, values in plain.items():
        if group in IGNORED_TOP_LEVEL:
            continue
        if group not in GROUPS:
            raise ValueError(f"{source}: unknown config group {group!r}; choose from: {', '.join(GROUPS)}")
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ValueError(f"{source}: group {group!r} must be a mapping, got {values!r}")
        for key, value in values.items():
            flag = flag_for(group, key)
            if key == "_name" and flag is None:
                continue  # common._name etc.: fairseq writes these as null
            if flag is None:
                if value is not None:
                    data = [str(value)]
                continue
            if value is None or value is False:
                continue
            if value is True:
                argv.append(flag)
            else:
                argv += [flag, _format_value(group, key, value)]
    if not data:
        raise ValueError(f"{source}: task.data is required (the fairseq binarized data directory)")
    return data + argv


def parse_train_argv(argv: Sequence[str], source: str = "fairseq-train") -> argparse.Namespace:
    """Parse argv with fairseq-train's parser; argparse errors become a one-line ValueError."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            parser = options.get_training_parser()
            return options.parse_args_and_arch(parser, list(argv))
    except SystemExit as exc:
        message = stderr.getvalue().strip().splitlines()
        reason = message[-1] if message else f"exit status {exc.code}"
        raise ValueError(f"{source}: fairseq-train rejects the composed flags: {reason}") from None


def resolve_config(config_dir: str | Path, name: str, overrides: Sequence[str] = ()) -> argparse.Namespace:
    """Compose the YAML + overrides and return the Namespace fairseq-train would train with."""
    cfg = compose(config_dir, name, overrides)
    source = str(_config_path(config_dir, name))
    args = parse_train_argv(config_to_argv(cfg, source), source)
    _check_false_booleans(cfg, args, source)
    return args


def _check_false_booleans(cfg: DictConfig, args: argparse.Namespace, source: str) -> None:
    """A `key: false` is dropped from argv; make sure the parser's default agrees with it."""
    for group, values in OmegaConf.to_container(cfg, resolve=True).items():
        if not isinstance(values, dict):
            continue
        for key, value in values.items():
            if value is False and getattr(args, key, False) is not False:
                raise ValueError(f"{source}: {group}.{key}: false cannot be expressed as a fairseq-train "
                                 f"flag (its default is {getattr(args, key)!r})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fairseq-hydra-train",
        description="Train from a fairseq-style YAML config (converted to fairseq-train flags).")
    parser.add_argument("--config-dir", "-cd", "--config-path", "-cp", "-config-dir", dest="config_dir", required=True,
                        help="directory holding <config-name>.yaml (-config-dir, as README.glue.md of fairseq's "
                             "examples/roberta writes it, is accepted too)")
    parser.add_argument("--multirun", "-m", action="store_true",
                        help="hydra's multirun: an override with comma-separated values (key=a,b) is a sweep; one "
                             "training per combination, in turn (each in save_dir/<job number> when there are several)")
    parser.add_argument("--config-name", "-cn", required=True, help="config file name, without .yaml")
    parser.add_argument("--print-argv", action="store_true",
                        help="print the equivalent fairseq-train command line and exit")
    parser.add_argument("overrides", nargs="*", help="group.key=value overrides (hydra syntax)")
    return parser


def _sweep_values(value: str) -> list[str]:
    """hydra's sweep syntax: `a,b,c` splits at commas outside brackets and quotes; `[a,b]` is one list value."""
    parts, depth, quote, start = [], 0, None, 0
    for i, ch in enumerate(value):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(value[start:i])
            start = i + 1
    return parts + [value[start:]]


def sweep(overrides: Sequence[str]) -> list[list[str]]:
    """The override lists of a multirun: the cartesian product of every sweep (hydra's basic sweeper order:
    the last override varies fastest). Without a sweep, one job with the overrides as given."""
    choices = []
    for item in overrides:
        key, value = _split_override(item)
        if value is None:
            choices.append([item])
            continue
        prefix = item[: len(item) - len(item.lstrip("+"))]
        choices.append([f"{prefix}{key}={v}" for v in _sweep_values(value)])
    return [list(job) for job in itertools.product(*choices)]


def _job_argv(args, overrides: Sequence[str], job: int | None) -> list[str]:
    cfg = compose(args.config_dir, args.config_name, overrides)
    if job is not None:  # hydra gives each job of a sweep its own folder; here its own save_dir
        if not isinstance(cfg.get("checkpoint"), DictConfig):
            cfg.checkpoint = {}
        cfg.checkpoint.save_dir = os.path.join(str(cfg.checkpoint.get("save_dir") or "checkpoints"), str(job))
    source = str(_config_path(args.config_dir, args.config_name))
    train_argv = config_to_argv(cfg, source)
    if not args.print_argv:
        _check_false_booleans(cfg, parse_train_argv(train_argv, source), source)
    return train_argv


def cli_main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    for item in args.overrides:  # hydra's own settings (output dirs, launcher): no working directory changes here
        if _split_override(item)[0].startswith("hydra."):
            logging.getLogger("fairseq_cli.hydra_train").warning(
                f"{item}: hydra's own settings have no effect here (runs stay in the current directory)")
    jobs = sweep(args.overrides) if args.multirun else [list(args.overrides)]
    try:
        argvs = [_job_argv(args, job, num if len(jobs) > 1 else None) for num, job in enumerate(jobs)]
    except (ValueError, FileNotFoundError) as exc:
        print(f"fairseq-hydra-train: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    for num, (job, train_argv) in enumerate(zip(jobs, argvs)):
        if args.print_argv:
            print("fairseq-train " + " ".join(shlex.quote(a) for a in train_argv))
            continue
        if len(jobs) > 1:
            logging.getLogger("fairseq_cli.hydra_train").info(f"multirun job {num}: {' '.join(job)}")
        train.cli_main(train_argv)  # fairseq-train itself: same logging, distributed launch and errors


if __name__ == "__main__":
    cli_main()
