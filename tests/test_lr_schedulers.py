"""fairseq 0.12.2's --lr-scheduler choices: the lr at every update (and at every epoch end) equals the real
fairseq's on the same command line, exactly (tests/data/fairseq_optim_reference.json, made by
tests/make_optim_reference.py with fairseq itself); the epoch hooks run in fairseq's order through our
Trainer's own methods, and in real fairseq-train runs (several epochs, validation) against fairseq's."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from fairseq import options
from fairseq.optim import build_optimizer
from fairseq.optim.lr_scheduler.manual_lr_scheduler import parse_lr_table
from fairseq.optim.lr_scheduler.time_clock import build_schedule
from fairseq.trainer import Trainer
from test_launch import train_in_process  # the launch tests' in-process fairseq-train

REF = json.loads((Path(__file__).parent / "data" / "fairseq_optim_reference.json").read_text())
SCHEDULES = {case["name"]: case for case in REF["schedules"]}
LOOPS = {case["name"]: case for case in REF["loops"]}


def parse(argv):
    return options.parse_args_and_arch(options.get_training_parser(), list(argv))


def drive(schedule, epochs, val_losses, on_update=None):
    """Our Trainer's order (the one fairseq's trainer and train loop use): the schedule is built and set at
    update 0 (Trainer.__init__), Trainer.lr_step after the checkpoint load, then per epoch Trainer.begin_epoch,
    step_update after every update, Trainer.lr_step with the epoch's validation loss."""
    trainer = SimpleNamespace(lr_scheduler=schedule, num_updates=0)
    optimizer = schedule.optimizer
    used, ends = [], []
    schedule.step_update(0)
    Trainer.lr_step(trainer, 1)
    init = optimizer.get_lr()
    for epoch, (updates, val) in enumerate(zip(epochs, val_losses), start=1):
        Trainer.begin_epoch(trainer, epoch)
        for _ in range(updates):
            used.append(optimizer.get_lr())
            if on_update is not None:
                on_update(trainer.num_updates)
            trainer.num_updates += 1
            schedule.step_update(trainer.num_updates)
        Trainer.lr_step(trainer, epoch, val)
        ends.append(optimizer.get_lr())
    return {"lr_init": init, "lr_used": used, "lr_epoch_end": ends}


def build(argv):
    args = parse(argv)
    optimizer = build_optimizer(args, [torch.nn.Parameter(torch.zeros(1))])
    return build_schedule(args, optimizer, lambda: 0.0)


def test_every_fairseq_schedule_is_covered():
    from fairseq import registry

    assert {case["argv"][case["argv"].index("--lr-scheduler") + 1] for case in REF["schedules"]} == set(
        registry.choices("lr-scheduler")) - {"pass_through"}  # pass_through: see below
    assert REF["fairseq"] == "0.12.2"


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_lr_at_every_update_equals_fairseq(name):
    case = SCHEDULES[name]
    schedule = build(case["argv"])
    ours = drive(schedule, case["epochs"], case["val_losses"])
    assert ours["lr_init"] == case["lr_init"]
    assert ours["lr_used"] == case["lr_used"]  # exact doubles: the arithmetic runs in fairseq's order
    assert ours["lr_epoch_end"] == case["lr_epoch_end"]
    state = schedule.state_dict()
    assert {k: state[k] for k in case["state"]} == case["state"]  # ours may hold more (reduce_lr_on_plateau)


@pytest.mark.parametrize("name", sorted(LOOPS))
def test_fairseq_train_sets_the_lr_of_every_update_as_fairseq(name, peer_dir, tmp_path, monkeypatch):
    """Real runs: 4 epochs of 5 updates, validation every epoch (its loss drives reduce_lr_on_plateau,
    whose --lr-threshold 0.5 makes each decision clear of the small loss differences between the two)."""
    seen = []
    original = Trainer.train_step

    def recording(self, samples):
        seen.append((self.num_updates, self.get_lr()))
        return original(self, samples)

    monkeypatch.setattr(Trainer, "train_step", recording)
    case = LOOPS[name]
    data = tmp_path / "data"  # the fixture's valid split as train and valid, as the reference run had it
    data.mkdir()
    for name_ in ("dict.txt", "train.bin", "train.idx", "valid.bin", "valid.idx"):
        (data / name_).symlink_to(peer_dir / "data-bin" / ("dict.txt" if name_ == "dict.txt" else "valid" + name_[5:]))
    train_in_process([str(data), *case["argv"], "--save-dir", str(tmp_path / "save")])
    assert [n for n, _ in seen] == case["num_updates"]
    assert [lr for _, lr in seen] == case["lr_used"]


def test_pass_through_needs_an_optimizer_with_its_own_schedule():
    with pytest.raises(ValueError, match="pass_through needs an optimizer that schedules its own lr"):
        parse(["D", "-a", "roberta_base", "--batch-size", "8", "--optimizer", "adam", "--lr-scheduler", "pass_through"])

    class OwnSchedule:  # what fairseq's composite optimizer offers: its own schedule's hooks
        def __init__(self):
            self.calls = []

        def step_update(self, n):
            self.calls.append(("update", n))
            return 0.5

        def step_begin_epoch(self, epoch):
            self.calls.append(("begin", epoch))

        def state_dict(self):
            return {"own": 1}

        def load_state_dict(self, state):
            self.calls.append(("load", state))

    from fairseq.optim.lr_scheduler import PassThroughScheduleSchedule

    optimizer = SimpleNamespace(lr_scheduler=OwnSchedule(), get_lr=lambda: 0.5)
    schedule = PassThroughScheduleSchedule(SimpleNamespace(optimizer="plugin"), optimizer)
    assert schedule.step_update(3) == 0.5 and schedule.state_dict() == {"own": 1}
    schedule.step_begin_epoch(2)
    schedule.load_state_dict({"own": 2})
    assert optimizer.lr_scheduler.calls == [("update", 3), ("begin", 2), ("load", {"own": 2})]


@pytest.mark.parametrize("flags, message", [
    ("--lr-scheduler triangular", "--lr-scheduler triangular needs --max-lr"),
    ("--lr-scheduler triangular --max-lr 1e-4 --lr 1e-3", "--max-lr 0.0001 must exceed --lr 0.001"),
    ("--lr-scheduler cosine", "--lr-scheduler cosine needs --lr-period-updates or --max-update > 0"),
    ("--lr-scheduler cosine --lr 1e-3 --min-lr 1e-2 --max-update 9", "--lr 0.001 must exceed --min-lr 0.01"),
    ("--lr-scheduler tri_stage", "--lr-scheduler tri_stage needs a decay stage"),
    ("--lr-scheduler tri_stage --phase-ratio (0.5,0.6,0.1) --max-update 9", "--phase-ratio .*adding up to 1"),
    ("--lr-scheduler step --lr 1e-3 --min-lr 1e-3", "--lr 0.001 must exceed --min-lr 0.001"),
    ("--lr-scheduler reduce_lr_on_plateau --lr-shrink 1", "--lr-shrink 1: reduce_lr_on_plateau needs a factor below 1"),
    ("--lr-scheduler manual --update2lr [1]", "--update2lr \\[1\\]: expected a dict"),
    ("--lr-scheduler manual --epoch2lr {'a':1}", "--epoch2lr {'a':1}: expected a dict"),
    ("--lr-scheduler cosine --lr 1e-3,1e-4 --max-update 9", "--lr-scheduler cosine takes one learning rate"),
])
def test_schedule_flags_are_refused_at_parse_time_with_the_flag_named(flags, message):
    with pytest.raises(ValueError, match=message):
        parse(["D", "-a", "roberta_base", "--batch-size", "8", "--optimizer", "sgd", *flags.split()])


def test_manual_tables():
    assert parse_lr_table("{'1-3': 0.1, '5,7': 0.2, 9: 0.3}", "--x") == {1: 0.1, 2: 0.1, 3: 0.1, 5: 0.2, 7: 0.2,
                                                                          9: 0.3}
    assert parse_lr_table("{}", "--x") == {}
