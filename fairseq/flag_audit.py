"""What every command-line flag does here: works, warns once, or stops with a clear error.

fairseq has many flags for features this toolkit does not have (TPUs, BMUF, sharded checkpoints,
profiling, ...). A flag that is accepted and then ignored would lie to the user, so every flag of
fairseq-train, fairseq-validate, fairseq-preprocess and fairseq-hydra-train is listed in FLAGS
exactly once, by argparse dest:

- "works": it has fairseq's meaning here (values outside its meaning are rejected where parsed);
- "warn: WHY": it has no effect here; passing a value other than fairseq's default logs one warning
  naming the flag (a ported script that passes fairseq's defaults stays quiet);
- "error: WHY": the feature is missing and ignoring it would change results; a non-default value
  stops the run before any work, with one line naming the flag.

tests/test_flags_audit.py walks every option of every parser and fails on a flag missing here, so
a new flag cannot slip in unclassified. Numeric domains and cross-flag rules live in fairseq/flag_rules.py.
"""
from __future__ import annotations

import argparse
import logging
import os
from typing import Dict, List

logger = logging.getLogger("fairseq.flags")

_NO_EFFECT = "has no effect here: "

# Flags with fairseq's meaning, grouped as in the parsers (common, dataset, distributed, optimization,
# checkpoint, model, masked_lm task, token dropping, optimizer/schedules, sentence_prediction,
# fairseq-validate, fairseq-preprocess, fairseq-hydra-train).
_WORKS = """
no_progress_bar log_interval log_format log_file tensorboard_logdir wandb_project seed cpu bf16
memory_efficient_bf16 fp16 memory_efficient_fp16 fp16_init_scale fp16_scale_window fp16_scale_tolerance
min_loss_scale threshold_loss_scale amp amp_init_scale amp_scale_window empty_cache_freq
task arch criterion optimizer lr_scheduler user_dir ignore_unused_valid_subsets combine_valid_subsets
num_workers skip_invalid_size_inputs_valid_test max_tokens batch_size required_batch_size_multiple
required_seq_len_multiple dataset_impl train_subset valid_subset validate_interval
validate_interval_updates validate_after_updates disable_validation max_tokens_valid batch_size_valid
max_valid_steps curriculum
distributed_world_size distributed_rank distributed_backend distributed_init_method distributed_port device_id
distributed_no_spawn ddp_backend bucket_cap_mb heartbeat_timeout find_unused_parameters broadcast_buffers
max_epoch max_update stop_time_hours clip_norm sentence_avg update_freq lr stop_min_lr
save_dir restore_file finetune_from_model reset_dataloader reset_lr_scheduler reset_meters reset_optimizer
save_interval save_interval_updates keep_interval_updates keep_interval_updates_pattern keep_last_epochs
keep_best_checkpoints no_save no_epoch_checkpoints no_last_checkpoints no_save_optimizer_state
best_checkpoint_metric maximize_best_checkpoint_metric patience checkpoint_suffix
load_checkpoint_on_all_dp_ranks
store_ema ema_decay ema_start_update ema_seed_model ema_update_freq ema_fp32
decoder_embed_dim decoder_ffn_embed_dim decoder_layers decoder_attention_heads decoder_normalize_before no_decoder_final_norm
no_token_positional_embeddings share_decoder_input_output_embed decoder_learned_pos layernorm_embedding
no_scale_embedding decoder_layerdrop
self_target future_target past_target add_bos_token max_target_positions pad_to_fixed_length pad_to_fixed_bsz
dict_size dataset_size
encoder_layers encoder_embed_dim encoder_ffn_embed_dim encoder_attention_heads max_positions dropout
attention_dropout activation_dropout pooler_dropout encoder_layerdrop untie_weights_roberta activation_fn
pooler_activation_fn spectral_norm_classification_head checkpoint_activations compile layer_norm_eps
data sample_break_mode tokens_per_sample mask_prob leave_unmasked_prob random_token_prob
freq_weighted_replacement mask_whole_words shorten_method shorten_data_split_list gpt2_encoder_json
gpt2_vocab_bpe bpe_tokenizer_json
token_drop token_drop_importance token_drop_layers token_importance_beta init_token_importance
sctd_interval sctd_weight sctd_full_mlm_weight sctd_kl_reduction token_drop_warmup_updates
token_drop_final_full_updates token_drop_ramp_updates token_drop_keep_multiple seq_len_schedule
adam_betas adam_eps weight_decay warmup_updates warmup_init_lr end_learning_rate power total_num_update
force_anneal lr_shrink min_lr t_mult lr_period_updates warmup_steps hold_steps decay_steps phase_ratio init_lr_scale
final_lr_scale max_lr shrink_min lr_deacy_period lr_decay lr_threshold lr_patience epoch2lr update2lr
momentum adafactor_eps clip_threshold decay_rate beta1 scale_parameter adadelta_rho adadelta_eps adamax_betas
adamax_eps no_bias_correction lamb_betas lamb_eps lr_schedule_clock lr_schedule_ticks update_freq_ramp_updates
num_classes regression_target init_token separator_token classification_head_name no_shuffle
ranking_head_name save_predictions max_option_length
path model_overrides quiet
bpe tokenizer sentencepiece_model sentencepiece_enable_sampling sentencepiece_alpha bpe_merges bpe_vocab
bpe_add_prefix_space moses_no_dash_splits moses_no_escape
source_lang target_lang trainpref validpref testpref destdir srcdict thresholdsrc nwordssrc bpe_dir
padding_factor workers only_source dict_only
config_dir config_name print_argv overrides multirun
""".split()

_WARN = {
    "azureml_logging": "no AzureML logger exists; use --log-file, --tensorboard-logdir or --wandb-project",
    "fp16_no_flatten_grads": "fp16 keeps fp32 parameters and gradients (autocast), nothing is flattened",
    "on_cpu_convert_precision": "CPU training keeps fp32 parameters (use --bf16 for bf16 autocast)",
    "amp_batch_retries": "an fp16/amp overflow skips the update and lowers the scale; batches are not retried",
    "all_gather_list_size": "logging outputs are all-reduced as tensors, there is no pickled gather buffer",
    "profile": "there is no profiler hook; wrap the run in torch.profiler yourself",
    "reset_logging": "logging is configured once per fairseq-train/fairseq-hydra-train run",
    "suppress_crashes": "errors always stop the run with a one-line message",
    "scoring": "there is no generation, so nothing is scored",
    "data_buffer_size": "with --num-workers N > 0 each worker builds 2 batches ahead (torch DataLoader)",
    "fixed_validation_seed": "validation is already deterministic (masks seeded by epoch 1, no dropout)",
    "num_shards": "only fairseq-generate shards its input this way; data parallelism shards by rank",
    "shard_id": "only fairseq-generate shards its input this way; data parallelism shards by rank",
    "fix_batches_to_gpus": "each epoch's shuffled batches are dealt to ranks round-robin",
    "distributed_num_procs": "the number of local processes is --distributed-world-size (or torchrun's)",
    "skip_remainder_batch": "the last, partial --update-freq group of an epoch is trained",
    "write_checkpoints_asynchronously": "checkpoints are written synchronously (temp file, fsync, rename)",
    "max_source_positions": "the encoder's position table is --max-positions",
    "include_target_tokens": "it only feeds data2vec models, which do not exist here",
    "anneal_eps": "fairseq 0.12.2's adadelta accepts it and does nothing with it either",
    "add_prev_output_tokens": "only encoder models exist here",
    "results_path": "fairseq-validate prints its results to the log",
}

_ERROR = {
    "tpu": "TPUs are not supported; train on CUDA or CPU",
    "model_parallel_size": "model parallelism is not supported; use --ddp-backend fully_sharded",
    "use_bmuf": "BMUF is not supported",
    "continue_once": "not supported: pass the checkpoint as --restore-file",
    "optimizer_overrides": "not supported: pass the new optimizer flags with --reset-optimizer",
    "checkpoint_shard_count": "sharded checkpoint files are not supported (FSDP saves one full file)",
    "mask_multiple_length": "span masking is not supported; only 1",
    "mask_stdev": "span masking is not supported; only 0",
    "relative_step": "fairseq 0.12.2's adafactor refuses a relative step with --lr, which is always set; "
                     "schedule the lr with --lr-scheduler",
    "warmup_init": "it needs --relative-step, which fairseq 0.12.2's adafactor refuses with --lr",
    "output_dictionary_size": "only -1 (the whole dict.txt) is supported: no truncated output vocabulary",
    "offload_activations": "not implemented; --checkpoint-activations alone cuts activation memory to one "
                           "tensor per layer",
}

FLAGS: Dict[str, str] = {**{d: "works" for d in _WORKS},
                         **{d: "warn: " + _NO_EFFECT + why for d, why in _WARN.items()},
                         **{d: "error: " + why for d, why in _ERROR.items()}}
assert len(FLAGS) == len(_WORKS) + len(_WARN) + len(_ERROR), "a flag is listed twice in fairseq/flag_audit.py"

_warned: set = set()


def flag_name(action: argparse.Action) -> str:
    """The flag as users write it: its first long option string (or the dest of a positional)."""
    longs = [s for s in action.option_strings if s.startswith("--")]
    return (longs or action.option_strings or [action.dest])[0]


def _is_default(action: argparse.Action, value) -> bool:
    if value is None or value == action.default:
        return True
    return action.default is None and value is False  # store_true flags whose parser default is None


def _is_first_process(args: argparse.Namespace) -> bool:
    """torchrun/SLURM/--distributed-init-method start one process per rank (or node), each parsing the
    command line: only the one that holds rank 0 warns."""
    for var in ("RANK", "SLURM_PROCID"):
        if os.environ.get(var, "0") != "0":
            return False
    return int(getattr(args, "distributed_rank", 0) or 0) == 0


def check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> List[str]:
    """Raise ValueError for a non-default "error" flag; warn once per "warn" flag; return the warnings.

    A dest missing from FLAGS is a bug in this package (the audit test catches it), so it raises, unless
    a --user-dir is loaded: then it is the plugin's own flag, whose meaning is the plugin's.
    """
    warnings = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or not hasattr(args, action.dest):
            continue
        status = FLAGS.get(action.dest)
        if status is None and getattr(args, "user_dir", None):
            continue
        if status is None:
            raise KeyError(f"{flag_name(action)} is not classified in fairseq/flag_audit.py FLAGS")
        value = getattr(args, action.dest)
        if status == "works" or _is_default(action, value):
            continue
        kind, why = status.split(": ", 1)
        name = flag_name(action)
        shown = "" if value is True else f" {value}"
        if kind == "error":
            raise ValueError(f"{name}{shown}: {why}")
        message = f"{name} {why}"
        warnings.append(message)
        if name not in _warned and _is_first_process(args):
            _warned.add(name)
            logger.warning(message)
    return warnings
