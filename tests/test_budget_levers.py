"""Budget levers: the lr schedule on elapsed training time (--lr-schedule-clock time) and the batch-size ramp
(--update-freq-ramp-updates). Each follows its formula, and a run stopped and resumed equals the
uninterrupted one (the elapsed time comes back from the checkpoint; the ramp's grouping from num_updates).
The training-time clock is replaced by a deterministic one: each update takes exactly 1 second."""
from __future__ import annotations

import itertools
import math
import shlex
from argparse import Namespace

import pytest
import torch

from fairseq import options, trainer as trainer_module
from fairseq.checkpoint.files import load_checkpoint_file
from fairseq.optim.lr_scheduler.time_clock import TimeClock
from fairseq.trainer import Trainer
from fairseq.update_freq import update_freq, updates_in
from test_launch import train_in_process

TINY = ("-a roberta_base --encoder-layers 2 --encoder-embed-dim 32 --encoder-ffn-embed-dim 64 "
        "--encoder-attention-heads 2 --tokens-per-sample 64 --max-positions 64 --sample-break-mode complete "
        "--optimizer adam --lr 1e-3 --batch-size 4 --criterion masked_lm --disable-validation --seed 3 "
        "--log-interval 1 --log-format json --no-epoch-checkpoints")
BUDGET_H = 0.0025  # 9 seconds of the fake clock: 3600 * 0.0025 is exactly 9.0
pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def parse(argv):
    return options.parse_args_and_arch(options.get_training_parser(), shlex.split(argv))


def run(data, save_dir, flags, monkeypatch):
    """fairseq-train in this process with a fresh 1-second-per-update clock; (trainer, [(batches, lr)] per update)."""
    ticks = itertools.count()
    monkeypatch.setattr(trainer_module, "clock", lambda: float(next(ticks)))  # start, end: 1 s per update
    seen = []
    original = Trainer.train_step

    def recording(self, samples):
        seen.append((len(samples), self.get_lr()))
        return original(self, samples)

    monkeypatch.setattr(Trainer, "train_step", recording)
    trained, _ = train_in_process(shlex.split(f"{data} {TINY} --save-dir {save_dir} {flags}"))
    monkeypatch.undo()
    return trained, seen


def assert_same_weights(a, b):
    for (na, pa), (nb, pb) in zip(a.model.named_parameters(), b.model.named_parameters()):
        assert na == nb and torch.equal(pa, pb), na


TIME = (f"--lr-scheduler polynomial_decay --warmup-updates 2 --lr-schedule-clock time --lr-schedule-ticks 10 "
        f"--stop-time-hours {BUDGET_H}")


def poly(tick, peak=1e-3, warmup=2, total=10):
    """polynomial_decay on ticks, written out (power 1, end 0)."""
    if tick <= warmup:
        return tick / float(warmup) * peak
    if tick >= total:
        return 0.0
    return peak * (1 - (tick - warmup) / (total - warmup))


def test_time_clock_follows_elapsed_time_and_resumes_exactly(peer_dir, tmp_path, monkeypatch):
    data = peer_dir / "data-bin"
    straight, seen = run(data, tmp_path / "a", TIME, monkeypatch)
    # 9 s budget, 1 s per update: stops after the update that passes it (fairseq: hours > --stop-time-hours)
    assert straight.num_updates == 10
    lrs = [lr for _, lr in seen]
    assert lrs == [poly(math.floor(10 * k / 9.0)) for k in range(10)]  # the tick after k updates (k seconds)
    first, seen1 = run(data, tmp_path / "b", TIME + " --max-update 4", monkeypatch)
    saved = load_checkpoint_file(str(tmp_path / "b" / "checkpoint_last.pt"))
    assert first.num_updates == 4 and saved["extra_state"]["previous_training_time"] == 4.0
    resumed, seen2 = run(data, tmp_path / "b", TIME, monkeypatch)
    assert resumed.num_updates == 10 and resumed.cumulative_training_time() == 10.0
    assert [lr for _, lr in seen1 + seen2] == lrs
    assert_same_weights(straight, resumed)


def test_time_clock_flags():
    with pytest.raises(ValueError, match="--lr-schedule-clock time needs --stop-time-hours > 0"):
        parse("D -a roberta_base --batch-size 8 --optimizer adam --lr-schedule-clock time")
    with pytest.raises(ValueError, match="--total-num-update 2000: .*ticks .*--lr-schedule-ticks 1000"):
        parse("D -a roberta_base --batch-size 8 --optimizer adam --lr-scheduler polynomial_decay --stop-time-hours 1 "
              "--lr-schedule-clock time --total-num-update 2000")
    args = parse("D -a roberta_base --batch-size 8 --optimizer adam --lr-scheduler cosine --stop-time-hours 2 "
                 "--lr-schedule-clock time --max-update 0")  # cosine's period defaults to the budget's ticks
    assert args.max_update == 0 and args.lr_schedule_ticks == 1000


def test_time_clock_wraps_any_schedule():
    class Opt:
        lr = None

        def set_lr(self, lr):
            self.lr = lr

        def get_lr(self):
            return self.lr

    from fairseq.optim.lr_scheduler import CosineLRSchedule

    args = Namespace(lr=[1e-3], warmup_updates=0, warmup_init_lr=-1, min_lr=0.0, t_mult=1.0, lr_period_updates=-1,
                     lr_shrink=0.1, max_update=100)
    elapsed = [0.0]
    clock = TimeClock(CosineLRSchedule(args, Opt()), lambda: elapsed[0], budget_hours=1.0, ticks=100)
    reference = CosineLRSchedule(args, Opt())
    for seconds in (0.0, 35.9, 36.0, 1800.0, 3599.0):
        elapsed[0] = seconds
        assert clock.step_update(12345) == reference.step_update(math.floor(100 * seconds / 3600))
    assert clock.state_dict() == reference.state_dict()


def test_update_freq_ramp_formula():
    args = Namespace(update_freq=[4, 8], update_freq_ramp_updates=6)
    assert [update_freq(args, 1, n) for n in range(8)] == [1, 1, 2, 2, 3, 3, 4, 4]
    assert [update_freq(args, 2, n) for n in range(8)] == [1, 2, 3, 4, 5, 6, 8, 8]  # the epoch's --update-freq
    assert updates_in(10, args, 1, 0) == 6  # 1+1+2+2+3 = 9 batches, then one partial group
    assert updates_in(12, args, 1, 6) == 3 and updates_in(0, args, 1, 0) == 0
    plain = Namespace(update_freq=[3], update_freq_ramp_updates=0)
    assert updates_in(10, plain, 1, 0) == 4 and update_freq(plain, 5, 0) == 3


def test_a_ramp_to_one_batch_warns_once(caplog, monkeypatch):
    from fairseq import update_freq as module

    monkeypatch.setattr(module, "_warned", [])
    caplog.set_level("WARNING")
    for _ in range(2):
        parse("D -a roberta_base --batch-size 8 --optimizer adam --update-freq-ramp-updates 5")
    assert [r.getMessage() for r in caplog.records].count(
        "--update-freq-ramp-updates 5 has no effect with --update-freq 1: the ramp grows the batches per update "
        "up to --update-freq") == 1


RAMP = "--update-freq 3 --update-freq-ramp-updates 4"


def test_update_freq_ramp_groups_batches_and_resumes_exactly(peer_dir, tmp_path, monkeypatch):
    data = peer_dir / "data-bin"
    straight, seen = run(data, tmp_path / "a", RAMP + " --max-update 7", monkeypatch)
    assert [n for n, _ in seen] == [1, 1, 2, 2, 3, 3, 3]  # 1 + 2 * n // 4 batches, then --update-freq 3
    run(data, tmp_path / "b", RAMP + " --max-update 3", monkeypatch)
    resumed, seen2 = run(data, tmp_path / "b", RAMP + " --max-update 7", monkeypatch)
    assert [n for n, _ in seen2] == [2, 3, 3, 3]
    assert_same_weights(straight, resumed)
