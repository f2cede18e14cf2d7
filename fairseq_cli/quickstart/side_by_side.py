"""Several training configurations in one process, their updates interleaved, each on its own clock.

Why: on a shared machine the load comes and goes. Variants trained one after another for equal wall
time get different shares of the CPU (seen: ScTD got 17 updates while the full model got 215), so a
busy minute can fake or hide a speedup. Here every configuration is a `Lane` (its own task, model,
criterion and Trainer, built from ordinary fairseq-train flags) and `interleave` runs one update of one
lane at a time, always the lane that is furthest behind. Each update's own wall time (the Trainer's
train_step, nothing else) is recorded per lane, and a lane's validation points sit on its own
cumulative step-time axis: validation, checkpointing and the other lanes' updates are not on it.
Load that comes and goes therefore hits every lane alike.

Isolation: the lanes share the process's global RNGs (torch for dropout, numpy, python). Each lane
keeps its own copy of those states and swaps it in around everything it runs (building, updates,
validation, checkpoints), so a lane's results do not depend on which lanes run beside it
(tests/test_side_by_side.py: alone == interleaved == fairseq-train with the same flags).

A lane runs fairseq-train's per-update semantics (--update-freq groups, epochs, data order, seeds);
the loop itself (how many updates, when to validate or save) is the caller's: the quickstart stops on a
step-time budget, the quality study on a fixed number of updates.
"""
from __future__ import annotations

import contextlib
import math
import time
from typing import Callable, Dict, List, Optional, Sequence

import torch

from fairseq import options, sctd, tasks, utils
from fairseq.checkpoint.files import atomic_save
from fairseq.checkpoint.restore import load_into_trainer
from fairseq.checkpoint.rng import rng_state, set_rng_state
from fairseq.checkpoint.save import build_state
from fairseq.trainer import Trainer, max_positions, move_to
from fairseq.update_freq import update_freq

# Flags whose job is the training loop's; a lane's caller owns the loop, so they would be ignored here.
LOOP_FLAGS = ("--max-update", "--max-epoch", "--stop-time-hours", "--save-dir", "--save-interval",
              "--save-interval-updates", "--validate-interval", "--validate-interval-updates", "--restore-file",
              "--patience", "--log-interval", "--log-format", "--log-file", "--disable-validation")


def check_no_loop_flags(argv: Sequence[str], source: str) -> None:
    """One clear error when `argv` (user-supplied training flags) sets a flag that the caller's loop owns."""
    for arg in argv:
        name = arg.split("=", 1)[0]
        if name in LOOP_FLAGS:
            raise ValueError(f"{source}: {name} is set by this tool (it runs the training loop); leave it out")


class Lane:
    """One training configuration: fairseq-train's setup from `argv`, one update per `step()`."""

    def __init__(self, name: str, argv: Sequence[str], valid_batches: Optional[int] = None):
        self.name = name
        self.argv = list(argv)
        self.args = options.parse_args_and_arch(options.get_training_parser(), self.argv)
        self.valid_batches = valid_batches
        self.step_seconds: List[float] = []  # wall time of each update, in order
        self.clock = 0.0  # their running sum: this lane's own time axis (seconds)
        self.tokens = 0.0  # training tokens (ntokens) consumed
        self.points: List[Dict[str, float]] = []  # validation results on this lane's clock
        self._rng: Optional[Dict] = None
        with self.own_rng():
            utils.set_seeds(self.args.seed)  # fairseq-train's order: seeds, task, valid data, model, criterion
            self.task = tasks.setup_task(self.args)
            self.task.load_dataset(self.args.valid_subset, epoch=1)
            model = self.task.build_model(self.args)
            self.trainer = Trainer(self.args, self.task, model, self.task.build_criterion(self.args))
            self.epoch_itr = self.trainer.get_train_iterator(1)
            self.trainer.lr_step(1)  # fairseq-train's schedule hook after the (absent) checkpoint
        self._itr = None
        self._valid_itr = None

    # ---- state --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def own_rng(self):
        """Run the body with this lane's torch/numpy/python RNG states; put the caller's back after."""
        outer = rng_state()
        if self._rng is not None:
            set_rng_state(self._rng)
        try:
            yield
        finally:
            self._rng = rng_state()
            set_rng_state(outer)

    @property
    def num_updates(self) -> int:
        return self.trainer.num_updates

    # ---- training -----------------------------------------------------------------------------
    def step(self) -> float:
        """One update (one --update-freq group of batches, as fairseq-train groups them); returns its seconds."""
        with self.own_rng():
            if self._itr is None or not self._itr.has_next():
                if self._itr is not None:
                    self.trainer.lr_step(self.epoch_itr.epoch)  # epoch end (a lane validates on its own clock)
                if self._itr is not None and (self.task.has_sharded_data(self.args.train_subset)
                                              or self.trainer.train_length_changed()):
                    # as fairseq-train: epoch k reads shard (k-1) mod n (and the blocks of --seq-len-schedule)
                    self.epoch_itr = self.trainer.get_train_iterator(self.epoch_itr.next_epoch_idx)
                idx = self.epoch_itr.next_epoch_idx
                self._itr = self.epoch_itr.next_epoch_itr(shuffle=idx > self.args.curriculum)
                self.trainer.begin_epoch(self.epoch_itr.epoch)
            uf = update_freq(self.args, self.epoch_itr.epoch, self.trainer.num_updates)
            chunk = [next(self._itr)]
            while len(chunk) < uf and self._itr.has_next():
                chunk.append(next(self._itr))
            start = time.perf_counter()
            out = self.trainer.train_step(chunk)
            seconds = time.perf_counter() - start
            if self.trainer.train_length_changed():  # --seq-len-schedule: the epoch ends at the switch
                self._itr.take(self._itr.n)
        if out is not None:
            self.tokens += float(out["log"].get("ntokens", 0.0))
        self.step_seconds.append(seconds)
        self.clock += seconds
        return seconds

    # ---- validation ---------------------------------------------------------------------------
    def _valid_batches(self):
        if self._valid_itr is None:  # built once: the same batches (and masks) at every validation
            self._valid_itr = self.task.get_batch_iterator(
                dataset=self.task.dataset(self.args.valid_subset), max_tokens=self.args.max_tokens_valid,
                max_sentences=self.args.batch_size_valid, max_positions=max_positions(self.task, self.trainer.model),
                ignore_invalid_inputs=self.args.skip_invalid_size_inputs_valid_test, seed=self.args.seed, epoch=1,
                split_name=self.args.valid_subset)
        itr = self._valid_itr.next_epoch_itr(shuffle=False, set_dataset_epoch=False)
        n = len(itr)
        # Batches come length-sorted: evenly spaced ones cover every length. The same ones every time.
        stride = 1 if not self.valid_batches else max(1, n // self.valid_batches)
        for i, sample in enumerate(itr):
            if i % stride == 0:
                yield sample

    def validate(self) -> Dict[str, float]:
        """Validation MLM loss (bits) of the full model and, under token dropping, of the dropping forward.

        The dropping forward's loss is the diagnostic for a gap: training optimises the dropping model,
        evaluation uses the full one. Appends {"updates", "seconds", "valid_loss"[, "valid_loss_drop"]}.
        """
        trainer, criterion = self.trainer, self.trainer.criterion
        dropper = getattr(self.task, "token_dropper", None)
        full_logs, drop_logs = [], []
        with self.own_rng():
            for sample in self._valid_batches():
                full_logs.append(trainer.valid_step(sample))
                if dropper is not None:  # the selection the next update would make (a pure function)
                    sample = move_to(sample, trainer.device)
                    with torch.no_grad(), self.task.autocast_context(trainer.step_optimizer):
                        keep = dropper.keep_positions(sample["net_input"]["src_tokens"], sample["id"],
                                                      self.num_updates)
                        drop_logs.append(criterion(trainer.model, sctd.with_kept_positions(sample, keep))[2])
        point = {"updates": self.num_updates, "seconds": self.clock,
                 "valid_loss": float(tasks.logged_metrics(self.task, criterion, full_logs)["loss"])}
        if drop_logs:
            point["valid_loss_drop"] = float(tasks.logged_metrics(self.task, criterion, drop_logs)["loss"])
        self.points.append(point)
        return point

    # ---- checkpoints --------------------------------------------------------------------------
    def save(self, path: str) -> None:
        """An ordinary fairseq checkpoint (resumable by fairseq-train too) plus this lane's clock and points."""
        with self.own_rng():
            state = build_state(self.args, self.trainer, self.epoch_itr, None, None)
        state["extra_state"]["side_by_side"] = {"step_seconds": list(self.step_seconds), "tokens": self.tokens,
                                                "points": [dict(p) for p in self.points]}
        atomic_save(state, path)

    def load(self, path: str) -> None:
        """Continue from `path` (written by save): model, optimizer, data position, RNGs, clock, points."""
        with self.own_rng():
            extra = load_into_trainer(self.trainer, path)
            state = extra["train_iterator"]  # as fairseq-train: the saved epoch's data (its shard), then the position
            self.epoch_itr = self.trainer.get_train_iterator(int(state["epoch"]))
            self.epoch_itr.load_state_dict(state)
        self._itr = None
        record = extra.get("side_by_side") or {}
        self.step_seconds = [float(s) for s in record.get("step_seconds", [])]
        self.clock = math.fsum(self.step_seconds)
        self.tokens = float(record.get("tokens", 0.0))
        self.points = [dict(p) for p in record.get("points", [])]


def interleave(lanes: Sequence[Lane], done: Callable[[Lane], bool], behind: Callable[[Lane], float],
               after_step: Optional[Callable[[Lane], None]] = None) -> None:
    """Step the lanes one update at a time until done(lane) holds for all of them.

    Each turn goes to the unfinished lane with the smallest behind(lane) (ties: the earlier lane), so
    with behind = num_updates this is round-robin, and with behind = clock the lanes advance together
    on their own time axes and end together. after_step(lane) runs after each update (validation,
    checkpoints, progress), off every clock; it may append lanes to `lanes` (a list), which then take
    their turns from the next one on (the quality study adds its time-budget runs once the budget is known).
    """
    while True:
        active = [lane for lane in lanes if not done(lane)]
        if not active:
            return
        lane = min(active, key=behind)
        lane.step()
        if after_step is not None:
            after_step(lane)
