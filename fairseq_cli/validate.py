"""fairseq-validate DATA --path CKPT [--valid-subset valid] ...: the validation loss of a checkpoint.

Model and task settings come from the checkpoint's cfg (ours or fairseq's own); flags given on the
command line override them (the data directory always comes from the command line). Prints
`valid on 'valid' subset | loss ... | ppl ... | wps ... | wpb ... | bsz ...` like fairseq.
"""
from __future__ import annotations

import argparse
import ast
import json
import logging
import sys
from typing import Dict, List, Optional

import torch

from fairseq import flag_audit, flag_rules, options, registry, tasks, token_drop
from fairseq.checkpoint.cfg import model_args_from_cfg
from fairseq.checkpoint.files import load_checkpoint_file
from fairseq.checkpoint.restore import check_vocab
from fairseq.data import encoders
from fairseq.distributed import collectives, launch
from fairseq.logging import meters
from fairseq.logging.progress_bar import setup_logging
from fairseq.trainer import max_positions, move_to, pick_device
from fairseq.user_dir import import_user_module

logger = logging.getLogger("fairseq_cli.validate")


def get_validation_parser() -> argparse.ArgumentParser:
    return options.get_validation_parser()


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Returns the merged Namespace: checkpoint cfg, then explicit flags, then parser defaults."""
    stage1 = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    stage1.add_argument("--task", default=options.DEFAULT_TASK)
    stage1.add_argument("--criterion", default="cross_entropy")
    stage1.add_argument("--bpe", default=None)
    stage1.add_argument("--tokenizer", default=None)
    names, _ = stage1.parse_known_args(argv)  # without --help, so --help lists the task's flags too
    import_user_module(options.parse_user_dir(argv or sys.argv[1:]))
    parser = _choice_parser(names)
    args = parser.parse_args(argv)
    flag_rules.check_domains(parser, args)
    flag_audit.check(parser, args)
    explicit_parser = _choice_parser(names)
    for action in explicit_parser._actions:
        action.default = argparse.SUPPRESS
        action.required = False
    explicit = vars(explicit_parser.parse_args(argv))
    state = load_checkpoint_file(args.path)
    merged = vars(model_args_from_cfg(state.get("cfg")))
    merged.update(explicit)
    for action in _group_actions(parser, "common"):  # logging and run settings are this command's own
        merged[action.dest] = getattr(args, action.dest)
    for key, value in vars(args).items():
        merged.setdefault(key, value)
    merged["task"] = args.task
    try:
        overrides = ast.literal_eval(args.model_overrides)
    except (ValueError, SyntaxError):
        raise ValueError(f"--model-overrides {args.model_overrides!r} is not a python dict literal") from None
    merged.update(overrides)
    merged["update_freq"] = [1]
    if merged.get("criterion") is None:
        merged["criterion"] = "cross_entropy"
    if merged.get("batch_size") is None and merged.get("max_tokens") is None:
        merged["batch_size"] = 8
    if "batch_size_valid" not in explicit:
        merged["batch_size_valid"] = merged.get("batch_size")
    if "max_tokens_valid" not in explicit:
        merged["max_tokens_valid"] = merged.get("max_tokens")
    ns = argparse.Namespace(**merged)
    ns._state = state
    ns._trained_with = training_only_settings(ns)
    return ns


def _choice_parser(names) -> argparse.ArgumentParser:
    """The validation parser with the flags of the chosen task, criterion (fairseq's default cross_entropy
    when none is named: the checkpoint's is used, with its own settings) and --bpe / --tokenizer."""
    parser = get_validation_parser()
    registry.lookup("task", names.task).add_args(parser)
    registry.lookup("criterion", names.criterion).add_args(parser)
    encoders.add_args(parser, names)
    return parser


def _group_actions(parser, title: str):
    return [a for g in parser._action_groups if g.title == title for a in g._group_actions]


def training_only_settings(args) -> Optional[str]:
    """Validation runs the full model (fairseq's valid_step: no token dropping, no ScTD pass). The checkpoint's
    --token-drop/ScTD settings are training settings: they are reset here, so the task builds no token
    dropper and logs no dropping schedule as if validation used it. Returns what the checkpoint trained
    with (for one honest log line), or None."""
    p = float(getattr(args, "token_drop", 0.0) or 0.0)
    if p <= 0:
        return None
    interval = getattr(args, "sctd_interval", None)
    args.token_drop = 0.0
    for name, default in token_drop.DROP_ONLY_DEFAULTS.items():
        setattr(args, name, default)
    return f"--token-drop {p:g}" + (f" with ScTD every {interval} updates" if interval else "")


def main(args) -> List[Dict]:
    state = args.__dict__.pop("_state", None)
    import_user_module(args)  # again in spawned workers
    trained_with = args.__dict__.pop("_trained_with", None)
    if trained_with:
        logger.info(f"validation runs the full model (the checkpoint was trained with {trained_with}: "
                    f"a training-time setting)")
    torch.manual_seed(args.seed)
    task = tasks.setup_task(args)
    model = task.build_model(args)
    if state is None:
        state = load_checkpoint_file(args.path)
    check_vocab(state, model, args.path)
    model.load_state_dict(state["model"], strict=True)
    device = pick_device(args)
    model.to(device).eval()
    criterion = task.build_criterion(args).to(device)
    criterion.eval()
    logger.info(f"loaded {args.path}; criterion {type(criterion).__name__}; device {device}")
    results = []
    for subset in [s for s in args.valid_subset.split(",") if s]:
        task.load_dataset(subset, epoch=1)
        itr = task.get_batch_iterator(
            dataset=task.dataset(subset), max_tokens=args.max_tokens_valid, max_sentences=args.batch_size_valid,
            max_positions=max_positions(task, model), ignore_invalid_inputs=args.skip_invalid_size_inputs_valid_test,
            required_batch_size_multiple=args.required_batch_size_multiple, seed=args.seed,
            num_shards=collectives.get_world_size(), shard_id=collectives.get_rank(), epoch=1, split_name=subset,
            num_workers=args.num_workers,
        ).next_epoch_itr(shuffle=False)
        window = meters.ValidWindow()
        autocast = (torch.autocast(device_type=device.type, dtype=torch.bfloat16) if getattr(args, "bf16", False)
                    else torch.autocast(device_type=device.type, enabled=False))
        with torch.no_grad(), autocast:
            for i, sample in enumerate(itr):
                if args.max_valid_steps is not None and i >= args.max_valid_steps:
                    break
                if not sample:
                    continue
                _, _, log = task.valid_step(move_to(sample, device), model, criterion)
                window.add(log)
        if collectives.get_world_size() > 1:
            window.sums = collectives.all_reduce_dict(window.sums)
        stats = window.stats(lambda logs: tasks.logged_metrics(task, criterion, logs), None)
        formatted = meters.format_stats(stats)
        if args.log_format == "json":
            logging.getLogger(subset).info(json.dumps(formatted))
        else:
            body = " | ".join(f"{k} {v}" for k, v in formatted.items())
            logging.getLogger(subset).info(f"valid on '{subset}' subset | {body}")
        results.append(dict(stats, subset=subset))
    return results


def setup_process(args) -> None:
    """Rank-aware logging in every validating process (spawned workers inherit none of the parent's)."""
    setup_logging(args.log_file, rank=args.distributed_rank)


def cli_main(argv=None) -> None:
    setup_logging()
    try:
        args = parse_args(argv)
        setup_logging(args.log_file)
        launch.call_main(args, main, worker_init=setup_process)
    except (ValueError, FileNotFoundError) as e:
        print(f"fairseq-validate: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    cli_main()
