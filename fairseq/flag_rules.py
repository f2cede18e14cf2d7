"""Every flag's allowed values and the rules that tie flags together, in one place.

Checked right after parsing (options.parse_args_and_arch, fairseq-validate, fairseq-preprocess), before
any data is read or any model built: each violation is one clear error naming the flag(s), as fairseq
raises it where fairseq has the rule. A flag's default lives where the flag is declared (options.py, the
registered classes' add_args); which fairseq flags do nothing here is fairseq/flag_audit.py.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
from typing import List

from fairseq import flag_audit, optim, seq_len_schedule, update_freq
from fairseq.data import data_utils
from fairseq.optim.adam import parse_betas

logger = logging.getLogger("fairseq.flags")

# The allowed values of every numeric flag (argparse dest -> domain), checked right after parsing,
# before any data is read or any model built. A value outside its domain stops the run with one line
# naming the flag. tests/test_bad_input.py asserts that every int/float option of every parser has an
# entry and that each domain is enforced. New numeric flag: add `"its_dest": DOMAIN,` here.
# Domains: ">0", ">=0", ">=1", ">=-1" (-1 = off), "(0,1)", "[0,1)", "[0,1]", "<=0", "any" (every number counts).
DOMAINS = {
    # common
    "log_interval": ">0", "seed": ">=0", "fp16_init_scale": ">0", "fp16_scale_window": ">0",
    "fp16_scale_tolerance": "[0,1]", "min_loss_scale": ">=0", "threshold_loss_scale": ">0",
    "amp_batch_retries": ">=0", "amp_init_scale": ">0", "amp_scale_window": ">0", "empty_cache_freq": ">=0",
    "all_gather_list_size": ">0", "model_parallel_size": ">=1",
    # dataset
    "num_workers": ">=0", "max_tokens": ">0", "batch_size": ">0", "required_batch_size_multiple": ">=1",
    "required_seq_len_multiple": ">=1", "data_buffer_size": ">=0", "validate_interval": ">0",
    "validate_interval_updates": ">=0", "validate_after_updates": ">=0", "fixed_validation_seed": ">=0",
    "max_tokens_valid": ">0", "batch_size_valid": ">0", "max_valid_steps": ">0", "curriculum": ">=0",
    "num_shards": ">=1", "shard_id": ">=0",
    # distributed_training
    "distributed_world_size": ">=1", "distributed_rank": ">=0", "distributed_port": ">=-1", "device_id": ">=0",
    "bucket_cap_mb": ">0", "heartbeat_timeout": ">=-1", "distributed_num_procs": ">=1",
    # optimization (lr and update_freq are lists: every element is checked)
    "max_epoch": ">=0", "max_update": ">=0", "stop_time_hours": ">=0", "clip_norm": ">=0",
    "update_freq": ">=1", "lr": ">=0", "stop_min_lr": "any", "lr_schedule_ticks": ">=1",
    "update_freq_ramp_updates": ">=0",
    # checkpoint
    "save_interval": ">0", "save_interval_updates": ">=0", "keep_interval_updates": ">=-1",
    "keep_interval_updates_pattern": ">=-1", "keep_last_epochs": ">=-1", "keep_best_checkpoints": ">=-1",
    "patience": ">=-1", "checkpoint_shard_count": ">=1",
    # model
    "encoder_layers": ">0", "encoder_embed_dim": ">0", "encoder_ffn_embed_dim": ">0",
    "encoder_attention_heads": ">0", "max_positions": ">0", "max_source_positions": ">0", "layer_norm_eps": ">0",
    "dropout": "[0,1)", "attention_dropout": "[0,1)", "activation_dropout": "[0,1)", "pooler_dropout": "[0,1)",
    "encoder_layerdrop": "[0,1)",
    # masked_lm task, token dropping / ScTD
    "tokens_per_sample": ">0", "mask_prob": "(0,1)", "leave_unmasked_prob": "[0,1]", "random_token_prob": "[0,1]",
    "mask_multiple_length": ">=1", "mask_stdev": ">=0",
    "token_drop": "[0,1)", "token_importance_beta": "[0,1]", "sctd_interval": ">=0", "sctd_weight": ">=0",
    "sctd_full_mlm_weight": ">=0", "token_drop_warmup_updates": ">=0", "token_drop_final_full_updates": ">=0",
    "token_drop_ramp_updates": ">=0", "token_drop_keep_multiple": ">=1",
    # optimizer, lr schedules
    "adam_eps": ">=0", "weight_decay": ">=0", "warmup_updates": ">=0", "warmup_init_lr": "any",
    "force_anneal": ">=0", "end_learning_rate": ">=0", "power": ">=0", "total_num_update": ">0",
    "momentum": "[0,1)", "clip_threshold": ">0", "decay_rate": "<=0", "beta1": "[0,1)",
    "adadelta_rho": "[0,1]", "adadelta_eps": ">=0", "adamax_eps": ">=0", "lamb_eps": ">=0",
    "min_lr": ">=0", "t_mult": ">0", "lr_period_updates": "any", "lr_shrink": "[0,1]", "warmup_steps": ">=0",
    "hold_steps": ">=0", "decay_steps": ">=0", "init_lr_scale": ">=0", "final_lr_scale": ">0", "max_lr": ">0",
    "lr_deacy_period": ">0", "lr_decay": "[0,1]", "lr_threshold": ">=0", "lr_patience": ">=0",
    # --bpe sentencepiece
    "sentencepiece_alpha": "[0,1]",
    # transformer_lm, language_modeling, dummy_lm / dummy_masked_lm
    "decoder_embed_dim": ">0", "decoder_ffn_embed_dim": ">0", "decoder_layers": ">0", "decoder_attention_heads": ">0",
    "decoder_layerdrop": "[0,1)", "output_dictionary_size": ">=-1", "max_target_positions": ">0",
    "dict_size": ">0", "dataset_size": ">0",
    # EMA
    "ema_decay": "[0,1]", "ema_start_update": ">=0", "ema_update_freq": ">=1",
    # sentence_prediction task
    "num_classes": ">=-1", "init_token": ">=0", "separator_token": ">=0",
    # sentence_ranking task
    "max_option_length": ">0",
    # fairseq-preprocess
    "thresholdsrc": ">=0", "nwordssrc": ">=-1", "padding_factor": ">=1", "workers": ">=1",
}

_DOMAIN_TESTS = {
    ">0": (lambda v: v > 0, "must be > 0"), ">=0": (lambda v: v >= 0, "must be >= 0"),
    ">=1": (lambda v: v >= 1, "must be >= 1"), ">=-1": (lambda v: v >= -1, "must be >= -1 (-1 = off)"),
    "(0,1)": (lambda v: 0 < v < 1, "must be in (0, 1)"), "[0,1)": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "[0,1]": (lambda v: 0 <= v <= 1, "must be in [0, 1]"), "<=0": (lambda v: v <= 0, "must be <= 0"),
    "any": (lambda v: True, ""),
}


def check_domains(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """ValueError naming the flag when a numeric value is outside DOMAINS (NaN is outside every domain)."""
    for action in parser._actions:
        domain = DOMAINS.get(action.dest)
        value = getattr(args, action.dest, None)
        if domain is None or value is None:
            continue
        ok, rule = _DOMAIN_TESTS[domain]
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if v != v or not ok(v):
                raise ValueError(f"{flag_audit.flag_name(action)} {v}: {rule}")



# RoBERTa's position table when neither --max-positions nor --tokens-per-sample sets it (fairseq's
# default, filled by models/architectures.base_architecture, which also runs check_sample_length).
ROBERTA_MAX_POSITIONS = 512
RESET_FLAGS = ("reset_optimizer", "reset_lr_scheduler", "reset_meters", "reset_dataloader")


def check_finetune_resets(args: argparse.Namespace) -> None:
    """fairseq's rule (and message): --finetune-from-model already resets everything, so a --reset-* beside it
    is an error. args: parsed arguments or fairseq's cfg.checkpoint (checkpoint_utils.load_checkpoint)."""
    if getattr(args, "finetune_from_model", None) and any(getattr(args, r, False) for r in RESET_FLAGS):
        given = ", ".join("--" + r.replace("_", "-") for r in RESET_FLAGS if getattr(args, r, False))
        raise ValueError("--finetune-from-model can not be set together with either --reset-optimizer or "
                         f"reset_lr_scheduler or reset_meters or reset_dataloader (given: {given}; it resets all "
                         "four itself)")


def check_valid_subsets(args: argparse.Namespace) -> None:
    """A valid split on disk that would silently go unvalidated is an error, unless
    --ignore-unused-valid-subsets (or --combine-valid-subsets / --disable-validation) says it is meant."""
    if (getattr(args, "ignore_unused_valid_subsets", False) or getattr(args, "combine_valid_subsets", False)
            or getattr(args, "disable_validation", False) or not getattr(args, "data", None)):
        return
    ignored = data_utils.unused_valid_subsets(args.data, getattr(args, "valid_subset", "valid"))
    if ignored:
        raise ValueError(f"valid splits {ignored} in {args.data} would be ignored by --valid-subset "
                         f"{args.valid_subset!r}; name them there, or pass --ignore-unused-valid-subsets")


def check_sample_length(args: argparse.Namespace) -> None:
    """--tokens-per-sample must fit the model's positions, known before anything is built.

    fairseq sizes the position table from --tokens-per-sample when --max-positions is absent, so a
    typo like --tokens-per-sample 100000 builds a 100k-position model whose first batch asks for an
    attention matrix of hundreds of GB. Beyond RoBERTa's 512 positions we ask for --max-positions.
    """
    tps = getattr(args, "tokens_per_sample", None)
    if tps is None:
        return
    max_positions = getattr(args, "max_positions", None)
    if max_positions is None and tps > ROBERTA_MAX_POSITIONS:
        raise ValueError(f"--tokens-per-sample {tps} exceeds RoBERTa's {ROBERTA_MAX_POSITIONS} positions; "
                         f"pass --max-positions {tps} to build a model with that many (attention memory "
                         f"grows with the square of the length)")
    if max_positions is not None and tps > max_positions:
        raise ValueError(f"--max-positions {max_positions} is smaller than --tokens-per-sample {tps}; "
                         f"raise --max-positions or lower --tokens-per-sample")


def check_cross_flag_rules(args: argparse.Namespace) -> None:
    """The rules between fairseq-train's flags (after check_domains), each one line naming the flags."""
    if args.fp16 and args.bf16:
        raise ValueError("--fp16 and --bf16 are mutually exclusive")
    if args.dataset_impl not in (None, "mmap"):
        raise ValueError(f"--dataset-impl {args.dataset_impl!r} is not supported; only mmap")
    if args.max_tokens is None and args.batch_size is None:
        raise ValueError("specify a batch size with --max-tokens or --batch-size")
    if "adam_betas" in args:
        parse_betas(args.adam_betas)
    if getattr(args, "optimizer", None) is not None:  # the optimizer's and schedule's own refusals, now
        optim.check_args(args)
        update_freq.check_args(args)
    check_finetune_resets(args)
    check_valid_subsets(args)
    seq_len_schedule.from_args(args)  # --seq-len-schedule parses and fits --tokens-per-sample / --max-update
    check_ema(args)


EMA_DEFAULTS = {"ema_decay": 0.9999, "ema_start_update": 0, "ema_seed_model": None, "ema_update_freq": 1,
                "ema_fp32": False}


def check_ema(args: argparse.Namespace) -> None:
    """--store-ema's companions: each --ema-* flag only means something with --store-ema (one warning
    naming those given without it); the EMA is not kept for FSDP-sharded models; --ema-seed-model must
    be a file, found now rather than after the first update (when fairseq would first read it)."""
    if not getattr(args, "store_ema", False):
        given = [k for k, v in EMA_DEFAULTS.items() if getattr(args, k, v) != v]
        if given:
            logger.warning(", ".join("--" + k.replace("_", "-") for k in given) + " has no effect without --store-ema")
        return
    if getattr(args, "ddp_backend", None) == "fully_sharded":
        raise ValueError("--store-ema is not supported with --ddp-backend fully_sharded (the average would need "
                         "the sharded weights gathered); use --ddp-backend pytorch_ddp or legacy_ddp")
    seed = getattr(args, "ema_seed_model", None)
    if seed is not None and not os.path.isfile(seed):
        raise FileNotFoundError(f"--ema-seed-model: checkpoint not found: {seed}")
