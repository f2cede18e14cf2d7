"""fairseq-train: masked-LM (and sentence_prediction) training with fairseq's loop semantics.

Loop (fairseq 0.12.2): for each epoch, group batches by --update-freq, run one update per group,
log train_inner every --log-interval updates, then validate/save when an epoch ends, every
--save-interval-updates / --validate-interval-updates, and when a stop condition (--max-update,
--max-epoch, --stop-time-hours) is reached. SIGINT/SIGTERM finish the current update (or validation
batch), write checkpoint_last.pt and exit with 128 + signal number; in a multi-process job a signal
seen by any rank stops all of them at the same update (fairseq/distributed/faults.py, docs/faults.md).
A run started with SIGINT ignored (in the background) keeps ignoring it; SIGTERM stops it.
"""
from __future__ import annotations

import logging
import math
import os
import signal
import sys
import time
from typing import List, Optional

import torch

from fairseq import checkpoint_utils, options, tasks, utils
from fairseq.checkpoint.names import is_better
from fairseq.checkpoint.save import CheckpointManager
from fairseq.checkpoint import save_dir
from fairseq.data import checks
from fairseq.distributed import collectives, faults, launch
from fairseq.cpu_memory import keep_freed_memory
from fairseq.logging import meters, wandb_log
from fairseq.logging.eta import UpdateEta
from fairseq.logging.progress_bar import ProgressLogger, check_tensorboard, log_file_handler, resolve_format, setup_logging
from fairseq.dataclass.namespace import as_namespace
from fairseq.trainer import Trainer, max_positions
from fairseq.update_freq import update_freq, updates_in
from fairseq.user_dir import import_user_module

logger = logging.getLogger("fairseq_cli.train")


class _Stop:
    """Signal flag: the loop checks it (agreed over ranks) after every update and validation batch."""
    signum: Optional[int] = None
    at: float = 0.0
    aborted = False  # a second SIGINT: whatever it interrupts (a save included) ends without saving


_REPEAT_S = 2.0  # a second SIGINT this soon is the same request (Ctrl-C reaches a spawned job's parent too,
                 # which forwards it); a later one aborts without saving


def _on_signal(signum, frame):
    if _Stop.signum is not None:
        if signum == signal.SIGINT and time.monotonic() - _Stop.at > _REPEAT_S:
            _Stop.aborted = True
            raise KeyboardInterrupt
        return
    _Stop.signum, _Stop.at = signum, time.monotonic()
    logger.warning(f"received {faults.signal_name(signum)}: finishing the current update, "
                   "then saving checkpoint_last.pt")


class StopRequested(Exception):
    """All ranks agreed to stop: `signum` was received by rank `rank`."""

    def __init__(self, signum: int, rank: int):
        super().__init__(f"{faults.signal_name(signum)} received by rank {rank}")
        self.signum, self.rank = signum, rank


def check_stop() -> None:
    """Raise StopRequested on every rank if any rank has received SIGINT/SIGTERM (a collective)."""
    agreed = faults.agree_on_stop(_Stop.signum)
    if agreed is not None:
        raise StopRequested(*agreed)


def install_signal_handlers():
    """_on_signal for faults.stop_signals(): SIGTERM, and SIGINT unless this process started with it
    ignored (a background job: Ctrl-C at the terminal is not for it, SIGTERM stops it)."""
    signals = faults.stop_signals()
    if signal.SIGINT not in signals:
        logger.info("SIGINT is ignored (inherited: started in the background, e.g. with nohup or '&' in a "
                    "script), so Ctrl-C does not stop this run; SIGTERM (kill PID) saves checkpoint_last.pt "
                    "and stops it")
    previous = {}
    for sig in signals:
        try:
            previous[sig] = signal.signal(sig, _on_signal)
        except ValueError:  # not the main thread
            pass
    return previous


def reduce_fn(task, criterion):
    """logs -> logged values: the task's reduce_metrics (the criterion's, plus the task's own keys)."""
    return lambda logging_outputs: tasks.logged_metrics(task, criterion, logging_outputs)


def validate(args, trainer, task, epoch: int, subsets: List[str], ckpt, progress) -> List[float]:
    losses = []
    for subset in subsets:
        itr = task.get_batch_iterator(
            dataset=task.dataset(subset), max_tokens=args.max_tokens_valid, max_sentences=args.batch_size_valid,
            max_positions=max_positions(task, trainer.model),
            ignore_invalid_inputs=args.skip_invalid_size_inputs_valid_test,
            required_batch_size_multiple=args.required_batch_size_multiple, seed=args.seed,
            num_shards=collectives.get_world_size(), shard_id=collectives.get_rank(), epoch=1,
            split_name=subset, num_workers=args.num_workers,
        ).next_epoch_itr(shuffle=False, set_dataset_epoch=False)
        window = meters.ValidWindow()
        for i, sample in enumerate(itr):
            if args.max_valid_steps is not None and i >= args.max_valid_steps:
                break
            check_stop()  # a long validation does not delay a stop request
            log = trainer.valid_step(sample)
            if log is not None:
                window.add(log)
        if collectives.get_world_size() > 1:
            window.sums = collectives.all_reduce_dict(window.sums)
        stats = window.stats(reduce_fn(trainer.task, trainer.criterion), trainer.num_updates)
        metric = args.best_checkpoint_metric
        if metric not in stats:
            raise ValueError(f"--best-checkpoint-metric {metric!r} is not a validation metric; "
                             f"choose from: {', '.join(stats)}")
        value = stats[metric]
        if ckpt.best is not None:
            pick = max if args.maximize_best_checkpoint_metric else min
            stats[f"best_{metric}"] = pick(ckpt.best, value)
        progress.print(meters.prefixed(stats, subset), tag=subset, step=trainer.num_updates)
        losses.append(value)
    return losses


def should_stop_now(args, trainer) -> bool:
    if args.max_update > 0 and trainer.num_updates >= args.max_update:
        logger.info(f"Stopping training due to num_updates: {trainer.num_updates} >= max_update: {args.max_update}")
        return True
    hours = trainer.cumulative_training_time() / 3600.0
    if args.stop_time_hours > 0 and hours > args.stop_time_hours:
        logger.info(f"Stopping training due to cumulative_training_time: {hours:.4f} > "
                    f"stop_time_hours: {args.stop_time_hours} hour(s)")
        return True
    return False


class Patience:
    def __init__(self, args):
        self.args, self.best, self.bad = args, None, 0

    def should_stop(self, value) -> bool:
        if value is None or self.args.patience <= 0:
            return False
        if self.best is None or is_better(self.args, value, self.best):
            self.best, self.bad = value, 0
            return False
        self.bad += 1
        if self.bad >= self.args.patience:
            logger.info(f"early stop since valid performance hasn't improved for last {self.args.patience} runs")
            return True
        return False


def validate_and_save(args, trainer, task, epoch_itr, subsets, ckpt, progress, patience, end_of_epoch: bool):
    n = trainer.num_updates
    epoch = epoch_itr.epoch
    should_stop = should_stop_now(args, trainer)
    do_save = ((end_of_epoch and epoch % args.save_interval == 0) or should_stop or
               (args.save_interval_updates > 0 and n > 0 and n % args.save_interval_updates == 0
                and n >= args.validate_after_updates))
    do_validate = (((not end_of_epoch and do_save) or (end_of_epoch and epoch % args.validate_interval == 0)
                    or should_stop or (args.validate_interval_updates > 0 and n > 0
                                       and n % args.validate_interval_updates == 0))
                   and not args.disable_validation and n >= args.validate_after_updates)
    valid_losses = [None]
    if do_validate:
        valid_losses = validate(args, trainer, task, epoch, subsets, ckpt, progress)
    should_stop = patience.should_stop(valid_losses[0]) or should_stop
    if do_save or should_stop:
        ckpt.save(trainer, epoch_itr, valid_losses[0], end_of_epoch)
    return valid_losses, should_stop


def with_ema_decay(trainer, stats):
    """fairseq logs the EMA's current decay last in the train stats (0 before --ema-start-update)."""
    if trainer.ema is not None:
        stats["ema_decay"] = meters.safe_round(trainer.ema.get_decay(), 5)
    return stats


def train_epoch(args, trainer, task, epoch_itr, subsets, ckpt, patience, fmt: str, start_time: float,
                eta: Optional[UpdateEta] = None):
    itr = epoch_itr.next_epoch_itr(shuffle=epoch_itr.next_epoch_idx > args.curriculum)
    epoch = epoch_itr.epoch
    uf = update_freq(args, epoch, trainer.num_updates)  # batches per update (ramped: fairseq/update_freq.py)
    done = math.ceil(itr.n / uf)
    groups = max(1, done + updates_in(len(itr) - itr.n, args, epoch, trainer.num_updates))
    progress = ProgressLogger(fmt, epoch=epoch, total=groups, tensorboard_logdir=args.tensorboard_logdir)
    trainer.begin_epoch(epoch)
    inner, whole = meters.TrainWindow(), meters.TrainWindow()
    reduce = reduce_fn(task, trainer.criterion)
    valid_losses, should_stop = [None], False
    chunk = []
    logger.info(f"begin training epoch {epoch}")
    try:
        for batch in progress.wrap(itr, offset=done):
            chunk.append(batch)
            if len(chunk) < uf and itr.has_next():
                continue
            out = trainer.train_step(chunk)
            chunk = []
            uf = update_freq(args, epoch, trainer.num_updates)
            if out is not None:
                inner.add(out["log"], out["gnorm"], out["clipped"], out["seconds"])
                whole.add(out["log"], out["gnorm"], out["clipped"], out["seconds"])
                n = trainer.num_updates
                if args.log_interval > 0 and n % args.log_interval == 0:
                    stats = with_ema_decay(trainer, inner.stats(reduce, n, trainer.get_lr(),
                                                                time.perf_counter() - start_time,
                                                                args.clip_norm, trainer.loss_scale))
                    progress.log(stats, tag="train_inner", step=n,
                                 update_frac=epoch - 1 + math.ceil(itr.n / uf) / groups)
                    inner.reset()
                if eta is not None and fmt in ("simple", "json") and eta.due(n, args.log_interval):
                    logger.info(eta.line(n))  # a non-TTY log shows the first update and an ETA (fairseq/logging/eta.py)
            if trainer.train_length_changed():  # --seq-len-schedule: the epoch ends at the switch
                itr.take(itr.n)
            check_stop()  # every rank learns of a signal any rank received, at this same update
            end_of_epoch = not itr.has_next()
            valid_losses, should_stop = validate_and_save(args, trainer, task, epoch_itr, subsets, ckpt,
                                                          progress, patience, end_of_epoch)
            if should_stop:
                break
    finally:
        progress.close()
    logger.info(f"end of epoch {epoch} (average epoch stats below)")
    if whole.updates:
        stats = with_ema_decay(trainer, whole.stats(reduce, trainer.num_updates, trainer.get_lr(),
                                                    time.perf_counter() - start_time, args.clip_norm,
                                                    trainer.loss_scale))
        progress.print(meters.prefixed(stats, "train"), tag="train", step=trainer.num_updates)
    return valid_losses, should_stop


def prepare_save_dir(args) -> None:
    """Rank 0 checks, locks and cleans --save-dir before any work (fairseq/checkpoint/save_dir.py); every
    rank learns the outcome, so a refusal ends all of them at once."""
    problem = None
    if collectives.is_master() and not args.no_save:
        problem = save_dir.prepare(args.save_dir)
    problem = collectives.broadcast_object(problem)
    if problem is not None:
        raise save_dir.SaveDirError(problem)


def main(args) -> Optional[Trainer]:
    """Train (args: the parsed arguments, or fairseq's grouped cfg of them)."""
    args = as_namespace(args)
    prepare_save_dir(args)
    try:
        return _main(args)
    finally:
        if collectives.is_master() and not args.no_save:
            save_dir.release(args.save_dir)


def _main(args) -> Optional[Trainer]:
    start_time = time.perf_counter()
    import_user_module(args)  # again in spawned workers and torchrun ranks (fresh interpreters)
    utils.set_seeds(args.seed)
    if collectives.is_master():
        check_tensorboard(args.tensorboard_logdir)  # a missing optional extra: one line now, not after the data
    if collectives.is_master() and args.wandb_project:
        wandb_log.start(args.wandb_project, args.save_dir)
    logger.info(args)
    task = tasks.setup_task(args)
    subsets = [s for s in args.valid_subset.split(",") if s] if not args.disable_validation else []
    for s in subsets:  # --combine-valid-subsets: fairseq's "valid" = valid + valid1 + ... (combine=True)
        task.load_dataset(s, epoch=1, combine=bool(args.combine_valid_subsets) and s == "valid")
    model = task.build_model(args)
    for s in subsets:  # what the first validation would reject, found now rather than after an epoch
        checks.check_valid_sizes(s, task.dataset(s).sizes, max_positions(task, model),
                                 args.skip_invalid_size_inputs_valid_test)
    criterion = task.build_criterion(args)
    logger.info(f"task: {type(task).__name__}; model: {type(model).__name__}; criterion: {type(criterion).__name__}")
    n_params = sum(p.numel() for p in model.parameters())
    n_trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info(f"num. model params: {n_params:,} (num. trained: {n_trained:,})")
    trainer = Trainer(args, task, model, criterion)
    logger.info(f"training on {collectives.get_world_size()} process(es), device {trainer.device}; "
                f"max tokens per batch = {args.max_tokens} and max sentences per batch = {args.batch_size}")
    ckpt = CheckpointManager(args)
    # fairseq's resume: --restore-file / --finetune-from-model, the --reset-* flags, the saved data position
    extra, epoch_itr = checkpoint_utils.load_checkpoint(args, trainer)  # a resumed epoch reads its own shard
    if extra is not None and "best" in extra:
        ckpt.best = extra["best"]
    fmt = resolve_format(args.log_format, args.no_progress_bar)
    patience = Patience(args)
    max_epoch = args.max_epoch or math.inf
    previous = install_signal_handlers()
    _Stop.signum, _Stop.aborted = None, False
    eta = UpdateEta(args.max_update, trainer.num_updates)
    try:
        if should_stop_now(args, trainer):
            return trainer
        while epoch_itr.next_epoch_idx <= max_epoch:
            if trainer.get_lr() <= args.stop_min_lr:
                logger.info(f"stopping training because the lr ({trainer.get_lr()}) fell to --stop-min-lr")
                break
            valid_losses, should_stop = train_epoch(args, trainer, task, epoch_itr, subsets, ckpt, patience,
                                                    fmt, start_time, eta)
            if should_stop:
                break
            trainer.lr_step(epoch_itr.epoch, valid_losses[0])  # only the first subset's loss, as in fairseq
            reload = task.has_sharded_data(args.train_subset) or trainer.train_length_changed()
            if reload and epoch_itr.next_epoch_idx <= max_epoch:
                epoch_itr = trainer.get_train_iterator(epoch_itr.next_epoch_idx)
    except StopRequested as stop:
        save_and_exit(args, trainer, epoch_itr, ckpt, stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    wandb_log.finish()
    logger.info(f"done training in {time.perf_counter() - start_time:.1f} seconds")
    return trainer


def save_and_exit(args, trainer, epoch_itr, ckpt, stop: StopRequested) -> None:
    """Every rank: save checkpoint_last.pt once (together), then exit with 128 + the signal number."""
    names = ckpt.save(trainer, epoch_itr, None, end_of_epoch=False, only_last=True)
    if collectives.is_master():
        saved = f"saved {os.path.join(args.save_dir, names[0])}" if names else "nothing saved (--no-save)"
        print(f"fairseq-train: stopped by {faults.signal_name(stop.signum)} (received by rank {stop.rank}) "
              f"at update {trainer.num_updates}; {saved}; rerun the same command to resume",
              file=sys.stderr, flush=True)
    # Every rank got here together (the stop was agreed on): finish the save's last collective on all
    # ranks before any of them tears its connections down, or gloo aborts (SIGABRT) a slower peer.
    collectives.barrier()
    sys.exit(128 + stop.signum)


def setup_process(args) -> None:
    """Per-process set-up, run in every training process once its rank is known (spawned workers are
    fresh interpreters and inherit none of it): rank-aware logging (rank 0 like a single process, with
    --log-file; others warnings only) and the malloc tuning of fairseq/cpu_memory.py."""
    setup_logging(args.log_file, rank=args.distributed_rank)
    keep_freed_memory()  # CPU steps stop page-faulting their activations back in


def worker_main(args) -> Optional[Trainer]:
    """main() with bad input reported as one line, in whichever process (or spawned worker) hit it."""
    try:
        return main(args)
    except save_dir.SaveDirError as e:  # raised on every rank together: reported once
        if collectives.is_master():
            print(f"fairseq-train: error: {e}", file=sys.stderr)
        sys.exit(1)
    except (ValueError, FileNotFoundError, FloatingPointError) as e:
        print(f"fairseq-train: error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:  # a second SIGINT while stopping: abort without saving
        _aborted(args)
    except RuntimeError as e:
        if _Stop.aborted:  # the same, raised inside torch's code, which wrapped it
            _aborted(args)
        if not (collectives.get_world_size() > 1 and faults.is_comm_failure(e)):
            raise
        # a collective failed: a peer died or hung past --heartbeat-timeout
        line = faults.lost_peer_message(e, faults.heartbeat_timeout(args), save_dir.last_save_note(args))
        print(f"fairseq-train: error: {line}", file=sys.stderr, flush=True)
        sys.exit(1)


def _aborted(args) -> None:
    print(f"fairseq-train: aborted by a second SIGINT; not saved, {save_dir.last_save_note(args)}",
          file=sys.stderr, flush=True)
    sys.exit(128 + signal.SIGINT)


def cli_main(argv=None) -> None:
    setup_logging()  # flag warnings (fairseq/flag_audit.py) are logged while parsing
    parser = options.get_training_parser()
    try:
        args = options.parse_args_and_arch(parser, argv)
        if args.log_file:
            log_file_handler(args.log_file).close()  # created (with its directory) before any worker starts
    except (ValueError, FileNotFoundError) as e:
        print(f"fairseq-train: error: {e}", file=sys.stderr)
        sys.exit(2)
    setup_logging()
    trainer = None
    try:
        trainer = launch.call_main(args, worker_main, worker_init=setup_process)
        code = 0
    except ValueError as e:  # the distributed flags, before any worker starts
        print(f"fairseq-train: error: {e}", file=sys.stderr)
        code = 1
    except torch.multiprocessing.ProcessExitedException as e:  # a spawned worker already said why
        code = e.exit_code if e.exit_code is not None else 1
    except SystemExit as e:  # a stop (128 + signal) or an error already reported in one line
        code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
        if launch.joined_group():  # before the traceback, which holds the trainer, is freed
            launch.exit_after_group(code)
    # A rank of a torchrun / --distributed-no-spawn job ends here while the trainer (and its DDP reducer)
    # is still referenced: freeing them at exit can deadlock in torch's gloo teardown (launch.exit_after_group).
    if launch.joined_group():
        launch.exit_after_group(code)
    del trainer  # one process (or a spawning parent): freed as usual
    if code:
        sys.exit(code)


if __name__ == "__main__":
    cli_main()
