"""One optimizer update with fairseq's semantics (FAIRSEQ_SPEC section 6).

Per update: run the --update-freq micro-batches (gradients summed; DDP sync only on the last),
divide by the global sample_size, compute fairseq's gradient norm, clip if --clip-norm > 0, take
the Adam step, advance the lr schedule, update the loss scale, num_updates += 1, step the weight EMA
(--store-ema, fairseq.models.ema), task.after_update.

Precision choices (documented in docs/compatibility.md):
- --bf16: torch.autocast(bf16) on CPU or CUDA; parameters, gradients and Adam state stay fp32.
- --fp16 / --memory-efficient-fp16 on CUDA: torch.autocast(fp16) with fp32 parameters (which thus
  act as the fp32 master copy) and fairseq's dynamic loss scaler (an overflow skips the update).
- --fp16 on CPU: warn once and train in fp32 (no scaler, no loss_scale in the logs).
--compile compiles the encoder layers (fairseq/compile.py) before the model is wrapped for DDP/FSDP.
"""
from __future__ import annotations

import logging
import math
import time
from typing import Dict, List, Optional

import torch

from fairseq import seq_len_schedule, utils
from fairseq.checkpoint import restore
from fairseq.distributed import collectives, wrap
from fairseq.compile import compile_model
from fairseq.file_io import PathManager
from fairseq.logging.meters import add_logs
from fairseq.models.ema import build_ema
from fairseq.optim import build_optimizer
from fairseq.optim.lr_scheduler.time_clock import TimeClock, build_schedule
from fairseq.optim.loss_scaler import DynamicLossScaler, default_scale_window

logger = logging.getLogger(__name__)
_warned_fp16_cpu = False
# A loss above this many bits per unit has diverged even if it is finite: its perplexity 2**loss
# overflows a float, and no model giving its targets a probability below 2**-1024 is training.
DIVERGED_BITS = 1024
clock = time.perf_counter  # the training-time clock (tests replace it with a deterministic one)


class StepOptimizer:
    """What task.train_step receives as `optimizer`: backward with the loss scale, autocast settings."""

    def __init__(self, optimizer, scaler: Optional[DynamicLossScaler], autocast_dtype, device_type: str):
        self.optimizer = optimizer
        self.scaler = scaler
        self.autocast_dtype = autocast_dtype
        self.device_type = device_type

    def backward(self, loss: torch.Tensor) -> None:
        if self.scaler is not None:
            loss = loss * self.scaler.loss_scale
        loss.backward()

    def get_lr(self) -> float:
        return self.optimizer.get_lr()


def empty_cache_due(num_updates: int, freq: int) -> bool:
    """--empty-cache-freq N: fairseq frees the CUDA cache before updates 1, N+1, 2N+1, ... (0 = never)."""
    return freq > 0 and (num_updates + freq - 1) % freq == 0


def pick_device(args) -> torch.device:
    if torch.cuda.is_available() and not getattr(args, "cpu", False):
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def move_to(sample, device):
    if torch.is_tensor(sample):
        return sample.to(device, non_blocking=True)
    if isinstance(sample, dict):
        return {k: move_to(v, device) for k, v in sample.items()}
    if isinstance(sample, list):
        return [move_to(v, device) for v in sample]
    return sample


def max_positions(task, model) -> Optional[int]:
    """The longest sample both the task and the model accept (None when neither says)."""
    inner = wrap.unwrap(model)
    m = getattr(inner, "max_positions", None)
    model_max = m() if callable(m) else None
    task_max = task.max_positions() if hasattr(task, "max_positions") else None
    vals = [v for v in (task_max, model_max) if v is not None]
    return min(vals) if vals else None


def train_batch_iterator(args, task, model, epoch: int):
    """A fresh iterator over the loaded train split, for `epoch` (its shuffle seed is seed + epoch),
    sharded over the ranks of the process group."""
    return task.get_batch_iterator(
        dataset=task.dataset(args.train_subset), max_tokens=args.max_tokens, max_sentences=args.batch_size,
        max_positions=max_positions(task, model), ignore_invalid_inputs=True,
        required_batch_size_multiple=args.required_batch_size_multiple, seed=args.seed,
        num_shards=collectives.get_world_size(), shard_id=collectives.get_rank(), epoch=epoch,
        split_name=args.train_subset, num_workers=args.num_workers)


class Trainer:
    def __init__(self, args, task, model, criterion):
        global _warned_fp16_cpu
        self.args = args
        self.task = task
        self.device = pick_device(args)
        self.model = model.to(self.device)
        if getattr(args, "compile", False):
            compile_model(self.model)  # before DDP/FSDP wrapping; parameters and keys are unchanged
        self.criterion = criterion.to(self.device)
        self.wrapped_model = wrap.wrap_model(self.model, args)
        autocast_dtype, scaler = None, None
        if getattr(args, "bf16", False):
            autocast_dtype = torch.bfloat16
        elif getattr(args, "fp16", False):
            if self.device.type == "cuda":
                autocast_dtype = torch.float16
                window = args.fp16_scale_window or default_scale_window(collectives.get_world_size(),
                                                                        args.update_freq[0])
                scaler = DynamicLossScaler(init_scale=args.fp16_init_scale, scale_window=window,
                                           tolerance=args.fp16_scale_tolerance,
                                           threshold=args.threshold_loss_scale, min_loss_scale=args.min_loss_scale)
            elif not _warned_fp16_cpu:
                _warned_fp16_cpu = True
                logger.warning("--fp16/--memory-efficient-fp16 need CUDA; training in fp32 on CPU "
                               "(use --bf16 for bf16 autocast on CPU)")
        self.scaler = scaler
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.params = params
        self.optimizer = build_optimizer(args, params)
        self.previous_training_time = 0.0
        self._train_time = 0.0
        self.lr_scheduler = build_schedule(args, self.optimizer, self.cumulative_training_time)
        self._timed = isinstance(self.lr_scheduler, TimeClock)
        self.step_optimizer = StepOptimizer(self.optimizer, scaler, autocast_dtype, self.device.type)
        self.num_updates = 0
        self.lr_scheduler.step_update(0)
        self._dummy = None
        self.seq_len_schedule = seq_len_schedule.from_args(args)  # None without --seq-len-schedule
        self.train_length: Optional[int] = None  # the block length the loaded train split was built at
        self._ema = None

    @property
    def ema(self):
        """The weight EMA with --store-ema (else None), built from the model when first asked for, as
        fairseq's trainer does: when a checkpoint is loaded, else right after the first update."""
        if self._ema is None and getattr(self.args, "store_ema", False):
            self._ema = build_ema(self.model, self.args, self.device)
            logger.info("Exponential Moving Average Shadow Model is initialized.")
        return self._ema

    def _ema_kwargs(self) -> Dict:
        """fairseq passes the averaged model to tasks that declare `uses_ema` (train_step, valid_step)."""
        if getattr(self.task, "uses_ema", False) and self.ema is not None:
            return {"ema_model": self.ema.get_model()}
        return {}

    def get_train_iterator(self, epoch: int, load_dataset: bool = True):
        """fairseq's Trainer.get_train_iterator: (re)load the train split for `epoch`, then a fresh iterator.

        With sharded data (DATA1:DATA2:...) epoch k trains on shard (k-1) mod n, so the split is reloaded
        every epoch and the iterator's length follows that shard; otherwise it is loaded once, and again
        (whatever load_dataset says) when --seq-len-schedule has moved to another block length.
        """
        if load_dataset or self.train_length_changed():
            logger.info(f"loading train data for epoch {epoch}")
            if self.seq_len_schedule is None:
                self.task.load_dataset(self.args.train_subset, epoch=epoch)
            else:  # blocks of the length in force at this update (fairseq/seq_len_schedule.py)
                self.train_length = self.seq_len_schedule.length_at(self.num_updates)
                self.task.load_dataset(self.args.train_subset, epoch=epoch, tokens_per_sample=self.train_length)
        return train_batch_iterator(self.args, self.task, self.model, epoch)

    def train_length_changed(self) -> bool:
        """--seq-len-schedule asks for blocks of another length than the loaded train split's: the epoch
        in progress ends here, and the next one is loaded with get_train_iterator (seq_len_schedule.py)."""
        return self.seq_len_schedule is not None and self.seq_len_schedule.length_at(self.num_updates) != self.train_length

    # ---- state --------------------------------------------------------------------------------
    def get_lr(self) -> float:
        return self.optimizer.get_lr()

    def set_num_updates(self, n: int) -> None:
        self.num_updates = int(n)
        self.lr_scheduler.step_update(self.num_updates)

    # fairseq's epoch hooks of the schedule, each followed by the per-update one (fairseq's Trainer)
    def begin_epoch(self, epoch: int) -> float:
        self.lr_scheduler.step_begin_epoch(epoch)
        return self.lr_scheduler.step_update(self.num_updates)

    def lr_step(self, epoch: int, val_loss=None) -> float:
        self.lr_scheduler.step(epoch, val_loss)
        return self.lr_scheduler.step_update(self.num_updates)

    def get_num_updates(self) -> int:
        return self.num_updates

    @property
    def checkpoint_suffix(self) -> str:
        return getattr(self.args, "checkpoint_suffix", "") or ""

    def load_checkpoint(self, filename: str, reset_optimizer: bool = False, reset_lr_scheduler: bool = False,
                        optimizer_overrides=None, reset_meters: bool = False, reset_dataloader: bool = False):
        """fairseq's Trainer.load_checkpoint: the checkpoint's extra_state after loading it into this trainer
        (fairseq.checkpoint.restore.load_into_trainer), or None, starting from scratch, when there is no file.
        reset_dataloader (ours; checkpoint_utils.load_checkpoint passes it) leaves the RNG state alone, since
        the data position is not continued either."""
        if optimizer_overrides:
            raise ValueError("--optimizer-overrides is not supported: pass the new optimizer flags with "
                             "--reset-optimizer")
        if not PathManager.isfile(filename):
            restore.report_missing(filename, self.args.save_dir)
            return None
        return restore.load_into_trainer(self, filename, reset_optimizer, reset_lr_scheduler, reset_meters,
                                         restore_rng=not reset_dataloader)

    def cumulative_training_time(self) -> float:
        return self.previous_training_time + self._train_time

    def _agree_on_time(self) -> None:
        """Every rank takes the ranks' mean cumulative training time (as fairseq's trainer does), so a time
        clock sets the same lr everywhere and the time saved in a checkpoint is the one the schedule read."""
        total = collectives.all_reduce_dict({"t": self.cumulative_training_time()})["t"]
        self._train_time = total / collectives.get_world_size() - self.previous_training_time

    @property
    def loss_scale(self) -> Optional[float]:
        return self.scaler.loss_scale if self.scaler is not None else None

    # ---- one update ---------------------------------------------------------------------------
    def train_step(self, samples: List[Dict]) -> Optional[Dict]:
        """Returns {"log": summed logging output, "gnorm", "clipped", "seconds"}; None if skipped (overflow)."""
        start = clock()
        if self.device.type == "cuda" and empty_cache_due(self.num_updates, int(self.args.empty_cache_freq)):
            torch.cuda.empty_cache()
        self.wrapped_model.train()
        self.criterion.train()
        self.optimizer.zero_grad()
        logs: Dict = {}
        sample_size = 0
        ran = 0
        extra = self._ema_kwargs()
        for i, sample in enumerate(samples):
            dummy = not sample
            if dummy:
                if self._dummy is None:
                    continue
                sample = self._dummy
            else:
                sample = move_to(sample, self.device)
                self._dummy = sample
            last = i == len(samples) - 1
            with wrap.maybe_no_sync(self.wrapped_model, enabled=not last):
                _, size, log = self.task.train_step(sample, self.wrapped_model, self.criterion,
                                                    self.step_optimizer, self.num_updates, ignore_grad=dummy,
                                                    **extra)
            ran += 1
            add_logs(logs, log, scale=0.0 if dummy else 1.0)
            if not dummy:
                sample_size = sample_size + size
        if ran == 0:
            self._train_time += clock() - start
            return None
        if collectives.get_world_size() > 1:
            logs = collectives.all_reduce_dict(logs)
            sample_size = logs.get("sample_size", 0.0)
        grads = [p.grad for p in self.params if p.grad is not None]
        # fairseq: grads *= world / sample_size; our DDP hook sums (not averages), so no world factor.
        factor = 1.0 / (float(sample_size) or 1.0)
        if self.scaler is not None:
            factor = factor / self.scaler.loss_scale
        if grads:
            torch._foreach_mul_(grads, factor)
        clip = float(getattr(self.args, "clip_norm", 0.0) or 0.0)
        gnorm = utils.clip_grad_norm_(self.params, clip)  # fairseq's gnorm (before clipping); clips if clip > 0
        clipped = gnorm > clip if clip > 0 and grads else False
        bits = float(logs.get("loss", 0.0)) / (float(sample_size) or 1.0) / math.log(2)
        finite = bool(torch.isfinite(gnorm))
        if not finite:
            if self.scaler is not None:
                try:
                    self.scaler.check_overflow(float(gnorm))
                except OverflowError as e:
                    logger.info(f"update {self.num_updates + 1}: {e}")
                    self.optimizer.zero_grad()
                    discard = getattr(self.task, "discard_update", None)
                    if callable(discard):  # e.g. drop the importance losses of the skipped update
                        discard()
                    self._train_time += clock() - start
                    return None
        if not finite or not bits < DIVERGED_BITS:  # NaN bits fails the comparison too
            raise FloatingPointError(
                f"training diverged at update {self.num_updates + 1} (loss {bits:.4g} bits, grad norm "
                f"{float(gnorm):.4g}): NaN/inf or beyond {DIVERGED_BITS} bits; try a lower --lr or a --clip-norm")
        self.optimizer.step()
        if self.scaler is not None:
            self.scaler.update()
        self.num_updates += 1
        if self.ema is not None:
            self.ema.step(self.model, self.num_updates)
        self.task.after_update(self.num_updates)
        seconds = clock() - start
        self._train_time += seconds
        if self._timed and collectives.get_world_size() > 1:
            self._agree_on_time()
        self.lr_scheduler.step_update(self.num_updates)  # a time clock reads the time counted just above
        return {"log": logs, "gnorm": gnorm.detach(), "clipped": clipped, "seconds": seconds}

    # ---- validation ---------------------------------------------------------------------------
    def valid_step(self, sample: Dict) -> Optional[Dict]:
        if not sample:
            return None
        sample = move_to(sample, self.device)
        self.wrapped_model.eval()
        self.criterion.eval()
        with torch.no_grad(), self.task.autocast_context(self.step_optimizer):
            _, _, log = self.task.valid_step(sample, self.wrapped_model, self.criterion, **self._ema_kwargs())
        return log
