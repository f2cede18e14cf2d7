"""fairseq-hydra-train: run fairseq-train from a fairseq-style YAML config.

    fairseq-hydra-train --config-dir examples/sctd/config --config-name pretrain_base \
        task.data=/path/to/data-bin optimization.max_update=10

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
    parser.add_argument("--config-dir", "-cd", "--config-path", "-cp", dest="config_dir", required=True,
                        help="directory holding <config-name>.yaml")
    parser.add_argument("--config-name", "-cn", required=True, help="config file name, without .yaml")
    parser.add_argument("--print-argv", action="store_true",
                        help="print the equivalent fairseq-train command line and exit")
    parser.add_argument("overrides", nargs="*", help="group.key=value overrides (hydra syntax)")
    return parser


def cli_main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        cfg = compose(args.config_dir, args.config_name, args.overrides)
        source = str(_config_path(args.config_dir, args.config_name))
        train_argv = config_to_argv(cfg, source)
        if args.print_argv:
            print("fairseq-train " + " ".join(shlex.quote(a) for a in train_argv))
            return
        _check_false_booleans(cfg, parse_train_argv(train_argv, source), source)
    except (ValueError, FileNotFoundError) as exc:
        print(f"fairseq-hydra-train: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    train.cli_main(train_argv)  # fairseq-train itself: same logging, distributed launch and errors


if __name__ == "__main__":
    cli_main()
