"""fairseq-train's command line: fairseq 0.12.2 flag names, defaults and two-stage parsing.

Stage 1 reads --arch/--task/--criterion/--optimizer/--lr-scheduler; stage 2 adds the flags those
choices own (each class's add_args, as in fairseq) and parses everything, so an unknown flag is an
argparse error that names it. Unknown names raise a one-line ValueError listing the choices.
Right after parsing, before any work, every numeric value is checked against its domain and the rules
that tie flags together (fairseq/flag_rules.py), and every flag against fairseq/flag_audit.py
(no-effect flags warn once, missing features stop), so bad input is one line naming the flag instead
of a silent run or a traceback minutes later.
The grouped cfg that checkpoints store is built from these parsers by fairseq/checkpoint/cfg.py.
"""
from __future__ import annotations

import argparse
import ast
import logging
import sys
from typing import List, Optional, Sequence

from fairseq import flag_audit, flag_rules, registry
from fairseq.data import encoders
from fairseq.dataclass.configs import EMAConfig
from fairseq.dataclass.flags import gen_parser_from_dataclass
from fairseq.distributed import launch
from fairseq.optim.lr_scheduler.time_clock import CLOCKS
from fairseq.user_dir import import_user_module

DEFAULT_TASK = "masked_lm"

class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (`PROG: error: ...; see --help`), not the whole usage."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _has(parser: argparse.ArgumentParser, flag: str) -> bool:
    return flag in parser._option_string_actions


def str_list(value, type_=float) -> List:
    """fairseq list syntax: '1e-4', '1e-4,2e-4' or '[1e-4, 2e-4]' -> [1e-4, 2e-4]."""
    if isinstance(value, (list, tuple)):
        return [type_(v) for v in value]
    text = str(value).strip()
    if text.startswith("[") or text.startswith("("):
        text = text[1:-1]
    try:
        return [type_(ast.literal_eval(v.strip())) for v in text.split(",") if v.strip()]
    except (ValueError, SyntaxError):
        raise ValueError(f"cannot parse {value!r} as a comma-separated list of {type_.__name__}") from None


def _add_common(parser):
    g = parser.add_argument_group("common")
    add = g.add_argument
    add("--no-progress-bar", action="store_true", help="disable the progress bar")
    add("--log-interval", type=int, default=100, metavar="N", help="log every N updates")
    add("--log-format", default=None, choices=["json", "none", "simple", "tqdm"], help="log format")
    add("--log-file", default=None, help="also write the log to this file")
    add("--tensorboard-logdir", default=None, help="tensorboard directory (needs tensorboard)")
    add("--wandb-project", default=None, help="log to this Weights & Biases project (needs wandb; offline without network)")
    add("--azureml-logging", action="store_true", help="no effect here (warns)")
    add("--seed", type=int, default=1, metavar="N", help="random seed")
    add("--cpu", action="store_true", help="train on CPU even when CUDA is available")
    add("--tpu", action="store_true", help="not supported (error)")
    add("--compile", action="store_true",
        help="torch.compile the encoder layers for training (CPU needs a C++ compiler, CUDA triton)")
    add("--bf16", action="store_true", help="bf16 autocast (CPU or CUDA)")
    add("--memory-efficient-bf16", action="store_true", help="same as --bf16 here")
    add("--fp16", action="store_true", help="fp16 autocast + dynamic loss scaling on CUDA; fp32 on CPU")
    add("--memory-efficient-fp16", action="store_true", help="implies --fp16 (same path here)")
    add("--fp16-no-flatten-grads", action="store_true", help="no effect here (warns)")
    add("--fp16-init-scale", type=float, default=128, help="initial fp16 loss scale")
    add("--fp16-scale-window", type=int, default=None, help="updates without overflow before the scale grows")
    add("--fp16-scale-tolerance", type=float, default=0.0, help="fraction of overflows tolerated")
    add("--on-cpu-convert-precision", action="store_true", help="no effect here (warns)")
    add("--min-loss-scale", type=float, default=1e-4, help="stop training below this loss scale")
    add("--threshold-loss-scale", type=float, default=None, help="floor for the loss scale")
    add("--amp", action="store_true", help="same as --fp16 here, with --amp-init-scale/--amp-scale-window")
    add("--amp-batch-retries", type=int, default=2, help="no effect here (warns)")
    add("--amp-init-scale", type=float, default=2 ** 7, help="initial loss scale under --amp")
    add("--amp-scale-window", type=int, default=None, help="loss-scale growth window under --amp")
    add("--user-dir", default=None,
        help="a directory imported as a python package before parsing (its @register_* classes extend the choices)")
    add("--empty-cache-freq", type=int, default=0, help="torch.cuda.empty_cache() every N updates on CUDA")
    add("--all-gather-list-size", type=int, default=16384, help="no effect here (warns)")
    add("--model-parallel-size", type=int, default=1, help="only 1 (error otherwise)")
    add("--profile", action="store_true", help="no effect here (warns)")
    add("--reset-logging", action="store_true", help="no effect here (warns)")
    add("--suppress-crashes", action="store_true", help="no effect here (warns)")


def _add_dataset(parser, train: bool):
    g = parser.add_argument_group("dataset")
    add = g.add_argument
    add("--num-workers", type=int, default=1,
        help="background processes building batches (0 = in the main process); same batches for any N")
    add("--skip-invalid-size-inputs-valid-test", action="store_true",
        help="skip too-long valid/test samples instead of failing")
    add("--max-tokens", type=int, default=None, metavar="N", help="maximum tokens per batch")
    add("--batch-size", "--max-sentences", type=int, default=None, metavar="N",
        help="maximum sentences per batch")
    add("--required-batch-size-multiple", type=int, default=8, metavar="N",
        help="batch sizes are rounded to a multiple of N")
    add("--required-seq-len-multiple", type=int, default=1,
        help="pad each batch's length to a multiple of N (masked_lm)")
    add("--dataset-impl", default=None, choices=["mmap", "lazy", "cached", "raw", "fasta", "huffman"],
        help="only mmap is supported")
    add("--data-buffer-size", type=int, default=10, help="no effect here (warns)")
    add("--train-subset", default="train", help="training split")
    add("--valid-subset", default="valid", help="comma-separated validation splits")
    add("--combine-valid-subsets", "--combine-val", action="store_true", default=None,
        help="validate on valid, valid1, valid2, ... as one subset 'valid'")
    add("--ignore-unused-valid-subsets", action="store_true",
        help="do not stop when the data directory holds valid splits (valid1, ...) missing from --valid-subset")
    add("--validate-interval", type=int, default=1, metavar="N", help="validate every N epochs")
    add("--validate-interval-updates", type=int, default=0, metavar="N", help="validate every N updates")
    add("--validate-after-updates", type=int, default=0, metavar="N", help="no validation before N updates")
    add("--fixed-validation-seed", type=int, default=None, help="no effect here (warns)")
    add("--disable-validation", action="store_true", help="do not validate")
    add("--max-tokens-valid", type=int, default=None, metavar="N", help="max tokens per valid batch")
    add("--batch-size-valid", "--max-sentences-valid", type=int, default=None, metavar="N",
        help="max sentences per valid batch (default: --batch-size)")
    add("--max-valid-steps", "--nval", type=int, default=None, metavar="N", help="valid batches to run")
    add("--curriculum", type=int, default=0, metavar="N", help="do not shuffle batches for the first N epochs")
    add("--num-shards", type=int, default=1, help="no effect here (warns)")
    add("--shard-id", type=int, default=0, help="no effect here (warns)")


def _add_optimization(parser):
    g = parser.add_argument_group("optimization")
    add = g.add_argument
    add("--max-epoch", type=int, default=0, metavar="N", help="stop after N epochs (0 = no limit)")
    add("--max-update", type=int, default=0, metavar="N", help="stop after N updates (0 = no limit)")
    add("--stop-time-hours", type=float, default=0.0, metavar="H",
        help="stop after H hours of training wall time (0 = no limit)")
    add("--clip-norm", type=float, default=0.0, metavar="NORM", help="clip gradients to this norm (0 = off)")
    add("--sentence-avg", action="store_true", help="normalise cross_entropy by sentences, not tokens")
    add("--update-freq", default="1", metavar="N1,N2,...", help="accumulate gradients over N batches")
    add("--lr", "--learning-rate", default="0.25", metavar="LR1,LR2,...", help="learning rate")
    add("--stop-min-lr", type=float, default=-1.0, metavar="LR", help="stop when the lr falls below this")
    add("--lr-schedule-clock", default="updates", choices=CLOCKS,
        help="what the --lr-scheduler counts: updates (fairseq's), or time: ticks of --stop-time-hours")
    add("--lr-schedule-ticks", type=int, default=1000, metavar="N",
        help="with --lr-schedule-clock time: the budget's ticks, the unit of the schedule's update flags")
    add("--update-freq-ramp-updates", type=int, default=0, metavar="N",
        help="ramp the batches per update from 1 to --update-freq over the first N updates (0 = off)")
    add("--use-bmuf", action="store_true", help="not supported (error)")
    add("--skip-remainder-batch", action="store_true", help="no effect here (warns)")


def _add_checkpoint(parser):
    g = parser.add_argument_group("checkpoint")
    add = g.add_argument
    add("--save-dir", default="checkpoints", metavar="DIR", help="where to save checkpoints")
    add("--restore-file", default="checkpoint_last.pt",
        help="checkpoint to resume from (relative names are looked up in --save-dir first)")
    add("--continue-once", default=None, help="not supported (error)")
    add("--finetune-from-model", default=None, help="initialise the model from this checkpoint only")
    add("--reset-dataloader", action="store_true", help="do not restore the data iterator position")
    add("--reset-lr-scheduler", action="store_true", help="do not restore the lr scheduler state")
    add("--reset-meters", action="store_true", help="do not restore meters")
    add("--reset-optimizer", action="store_true", help="do not restore the optimizer (nor num_updates)")
    add("--optimizer-overrides", default="{}", help="not supported (error)")
    add("--save-interval", type=int, default=1, metavar="N", help="save every N epochs")
    add("--save-interval-updates", type=int, default=0, metavar="N", help="save every N updates")
    add("--keep-interval-updates", type=int, default=-1, metavar="N", help="keep the last N update checkpoints")
    add("--keep-interval-updates-pattern", type=int, default=-1, metavar="N",
        help="never delete update checkpoints whose update number is a multiple of N")
    add("--keep-last-epochs", type=int, default=-1, metavar="N", help="keep the last N epoch checkpoints")
    add("--keep-best-checkpoints", type=int, default=-1, metavar="N",
        help="keep the N best checkpoint.best_<metric>_<value>.pt files")
    add("--no-save", action="store_true", help="never save checkpoints")
    add("--no-epoch-checkpoints", action="store_true", help="only keep last and best")
    add("--no-last-checkpoints", action="store_true", help="do not write checkpoint_last.pt")
    add("--no-save-optimizer-state", action="store_true", help="leave the optimizer state out")
    add("--best-checkpoint-metric", default="loss", help="validation metric for checkpoint_best.pt")
    add("--maximize-best-checkpoint-metric", action="store_true", help="higher metric is better")
    add("--patience", type=int, default=-1, metavar="N", help="stop after N validations without improvement")
    add("--checkpoint-suffix", default="", help="suffix added to checkpoint names")
    add("--checkpoint-shard-count", type=int, default=1, help="only 1 (error otherwise)")
    add("--load-checkpoint-on-all-dp-ranks", action="store_true",
        help="every rank reads the checkpoint (always the case here)")
    add("--write-checkpoints-asynchronously", action="store_true", help="no effect here (warns)")


def add_ema_args(parser) -> None:
    """fairseq's --store-ema family (EMAConfig's fields; the trainer keeps the average, fairseq.models.ema)."""
    gen_parser_from_dataclass(parser.add_argument_group("EMA configuration"), EMAConfig())


def _add_distributed(parser):
    launch.add_distributed_args(parser)
    g = [grp for grp in parser._action_groups if grp.title == "distributed_training"][-1]
    if not _has(parser, "--distributed-num-procs"):
        g.add_argument("--distributed-num-procs", type=int, default=None, help="no effect here (warns)")


def get_preprocessing_parser(default_task: str = "translation") -> argparse.ArgumentParser:
    """fairseq-preprocess's parser (fairseq's options.get_preprocessing_parser); fairseq_cli.preprocess runs it."""
    p = ArgumentParser(prog="fairseq-preprocess", description="Build a dictionary and binarize text.")
    p.add_argument("-s", "--source-lang", default=None)
    p.add_argument("-t", "--target-lang", default=None)
    p.add_argument("--trainpref", default=None)
    p.add_argument("--validpref", default=None, help="comma-separated prefixes -> valid, valid1, ...")
    p.add_argument("--testpref", default=None, help="comma-separated prefixes -> test, test1, ...")
    p.add_argument("--destdir", default="data-bin")
    p.add_argument("--srcdict", default=None)
    p.add_argument("--thresholdsrc", type=int, default=0)
    p.add_argument("--nwordssrc", type=int, default=-1)
    p.add_argument("--padding-factor", type=int, default=8)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--dataset-impl", default="mmap", choices=["mmap"])
    p.add_argument("--only-source", action="store_true")
    p.add_argument("--dict-only", action="store_true")
    p.add_argument("--bpe-dir", default=None,
                   help="the BPE the inputs were encoded with (fairseq-bpe train's --output-dir): its tokenizer.json "
                        "and/or encoder.json + vocab.bpe are copied into --destdir, where "
                        "RobertaModel.from_pretrained(..., data_name_or_path=DESTDIR) and glue.sh find them")
    return p


def get_training_parser(default_task: str = DEFAULT_TASK) -> argparse.ArgumentParser:
    """The stage-1 parser (add the per-choice flags with `parse_args_and_arch`)."""
    parser = ArgumentParser(prog="fairseq-train", allow_abbrev=False)
    _add_common(parser)
    parser.add_argument("--task", default=default_task, metavar="TASK",
                        help="task: " + ", ".join(registry.choices("task")))
    parser.add_argument("-a", "--arch", default=None, metavar="ARCH", help="model architecture")
    parser.add_argument("--criterion", default="cross_entropy", help="criterion (fairseq's default: cross_entropy)")
    parser.add_argument("--optimizer", default=None,
                        help="optimizer (required, as in fairseq): " + ", ".join(registry.choices("optimizer")))
    parser.add_argument("--lr-scheduler", default="fixed",
                        help="schedule: " + ", ".join(registry.choices("lr-scheduler")))
    parser.add_argument("--scoring", default="bleu", help="no effect here (warns)")
    _add_encoders(parser)
    _add_dataset(parser, train=True)
    _add_distributed(parser)
    _add_optimization(parser)
    _add_checkpoint(parser)
    add_ema_args(parser)
    return parser


def _add_encoders(parser) -> None:
    """--tokenizer / --bpe (fairseq.data.encoders): the chosen one's flags are added in stage 2, for every task."""
    parser.add_argument("--tokenizer", default=None,
                        help="pre-BPE tokenizer, for tasks and plugins that encode text: "
                             + ", ".join(registry.choices("tokenizer")))
    parser.add_argument("--bpe", default=None,
                        help="BPE, for tasks and plugins that encode text, --mask-whole-words and the hub: "
                             + ", ".join(registry.choices("bpe")))


def get_validation_parser(default_task=None) -> argparse.ArgumentParser:
    """fairseq-validate's parser (fairseq's options.get_validation_parser); fairseq_cli.validate runs it."""
    parser = ArgumentParser(prog="fairseq-validate", allow_abbrev=False)
    _add_common(parser)
    parser.add_argument("--task", default=default_task or DEFAULT_TASK,
                        help="task: " + ", ".join(registry.choices("task")))
    parser.add_argument("--criterion", default=None, help="criterion (default: the checkpoint's)")
    _add_dataset(parser, train=False)
    _add_distributed(parser)
    _add_encoders(parser)
    g = parser.add_argument_group("common_eval")
    g.add_argument("--path", required=True, help="checkpoint to evaluate")
    g.add_argument("--model-overrides", default="{}", help="python dict of model args to override")
    g.add_argument("--results-path", default=None, help="no effect here (warns)")
    g.add_argument("--quiet", action="store_true", help="only print final scores (always the case here)")
    return parser


def add_choice_args(parser, names: argparse.Namespace, run: bool = True) -> None:
    """Add the flags owned by the chosen model, task, criterion, optimizer and schedule.

    run=False (get_args: arguments to build a model with, not a training run): no optimizer is needed,
    and names.task None adds no task flags."""
    if names.arch is None:
        raise ValueError("--arch/-a is required; choose from: " + ", ".join(registry.arch_choices()))
    model_cls = registry.model_class(names.arch)
    task_cls = registry.lookup("task", names.task) if names.task is not None or run else None
    criterion_cls = registry.lookup("criterion", names.criterion)
    if names.optimizer is None and run:
        raise ValueError("--optimizer is required (fairseq has no default); choose from: "
                         + ", ".join(registry.choices("optimizer")))
    optimizer_cls = registry.lookup("optimizer", names.optimizer) if names.optimizer is not None else None
    scheduler_cls = registry.lookup("lr-scheduler", names.lr_scheduler)
    model_cls.add_args(parser)
    if not _has(parser, "--max-source-positions"):
        g = [grp for grp in parser._action_groups if grp.title == "model"][-1]
        g.add_argument("--max-source-positions", type=int, default=None,
                       help="no effect here (warns): the encoder uses --max-positions")
    if task_cls is not None:
        task_cls.add_args(parser)
        task_dc = registry.dataclass_of(task_cls)
        if task_dc is not None:  # fields of a plugin's config that its inherited add_args does not cover
            gen_parser_from_dataclass(parser.add_argument_group("task"), task_dc())
    for cls in (criterion_cls, optimizer_cls, scheduler_cls):
        if cls is not None:
            cls.add_args(parser)
    encoders.add_args(parser, names)


def _postprocess(parser: argparse.ArgumentParser, args: argparse.Namespace, run: bool = True) -> argparse.Namespace:
    args.lr = str_list(args.lr, float)
    args.update_freq = str_list(args.update_freq, int)
    if not args.lr or not args.update_freq:
        raise ValueError(f"--lr {args.lr} / --update-freq {args.update_freq}: need at least one value")
    flag_rules.check_domains(parser, args)
    flag_audit.check(parser, args)
    if args.amp:  # fairseq's --amp scaler has its own init scale and window
        args.fp16 = True
        args.fp16_init_scale, args.fp16_scale_window = args.amp_init_scale, args.amp_scale_window
    if args.memory_efficient_fp16:
        args.fp16 = True
    if args.memory_efficient_bf16:
        args.bf16 = True
    if getattr(args, "batch_size_valid", None) is None:
        args.batch_size_valid = args.batch_size
    if getattr(args, "max_tokens_valid", None) is None:
        args.max_tokens_valid = args.max_tokens
    args.max_sentences = args.batch_size  # fairseq's old name, used by some scripts
    if run:  # the rules between a training run's flags (get_args builds a model, it runs nothing)
        flag_rules.check_cross_flag_rules(args)
    registry.get_arch(args.arch)(args)
    if getattr(args, "max_source_positions", None) is None and hasattr(args, "max_positions"):
        args.max_source_positions = args.max_positions
    return args


def parse_user_dir(argv: Sequence[str]) -> argparse.Namespace:
    """Only --user-dir, read before anything else so the plugin's names exist when the rest is parsed."""
    user_parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    user_parser.add_argument("--user-dir", default=None)
    return user_parser.parse_known_args(list(argv))[0]


def _wants_help(argv: Sequence[str]) -> bool:
    return any(a in ("-h", "--help") for a in argv)


def parse_args_and_arch(parser: argparse.ArgumentParser, input_args: Optional[Sequence[str]] = None,
                        parse_known: bool = False) -> argparse.Namespace:
    """Parse `input_args` (default sys.argv[1:]) with fairseq's two-stage scheme.

    Stage 1 runs without -h/--help, so `--task masked_lm --arch roberta_base --help` lists the flags
    of the chosen task, model, criterion, optimizer and schedule (without --arch: roberta_base's).
    """
    argv = [str(a) for a in (sys.argv[1:] if input_args is None else input_args)]
    import_user_module(parse_user_dir(argv))
    names, _ = parser.parse_known_args([a for a in argv if a not in ("-h", "--help")])
    if names.arch is None and _wants_help(argv):
        names.arch = "roberta_base"
    if names.optimizer is None and _wants_help(argv):
        names.optimizer = "adam"  # --help lists adam's flags; a run without --optimizer is an error
    add_choice_args(parser, names)
    if parse_known:
        args, _ = parser.parse_known_args(argv)
    else:
        args = parser.parse_args(argv)
    return _postprocess(parser, args)


def get_args(data, task: str = "translation", arch: str = "transformer", **overrides) -> argparse.Namespace:
    """fairseq's helper for building a model from Python: what fairseq-train would parse from
    `DATA --task TASK --arch ARCH`, then each override set as an attribute.

    As in fairseq this is not a training run, so no --optimizer or batch size is asked for. A task this
    package does not have (fairseq's translation tasks; fairseq's RoBERTa tests pass
    task="online_backtranslation") contributes no flags of its own: a warning says so, and args.task
    still names it.
    """
    parser = get_training_parser()
    known = task in registry.choices("task")
    if not known:
        logging.getLogger(__name__).warning(f"get_args: --task {task!r} is not a task of this package; the "
                                            "returned args hold no flags of it")
        parser.add_argument("data")
    names = argparse.Namespace(arch=arch, task=task if known else None, criterion="cross_entropy",
                               optimizer=None, lr_scheduler="fixed")
    add_choice_args(parser, names, run=False)
    args = parser.parse_args([str(data), "--arch", arch] + (["--task", task] if known else []))
    args.task = task
    args = _postprocess(parser, args, run=False)
    for key, value in overrides.items():
        setattr(args, key, value)
    return args
