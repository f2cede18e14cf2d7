"""Reference numbers from the real fairseq 0.12.2 for fairseq's schedules and optimizers.

Run with the python of a fairseq 0.12.2 install (../shared/tools/fairseq-0.12.2/build.sh builds one):

    /tmp/fairseq-peer-venv/bin/python tests/make_optim_reference.py --out tests/data/fairseq_optim_reference.json

Every case is a fairseq-train command line, parsed by fairseq's own parser and built by its registries:
- `schedules`: the lr at every update (and at every epoch end) of each --lr-scheduler, driven in the
  order of fairseq's Trainer and train loop (drive_schedule below); tests/test_lr_schedulers.py holds
  ours to these numbers, exactly.
- `optimizers`: parameters after a few updates of each --optimizer that runs on CPU in fairseq (lamb
  needs apex and CUDA there), from parameters and gradients stored here too; tests/test_optimizers.py.
- `loops`: the lr before every update of short real fairseq-train runs (several epochs, validation),
  for the schedules whose epoch hooks matter; tests/test_lr_schedulers.py runs our fairseq-train on
  the same command. Needs the fairseq-peer fixture data (--data).
The script imports nothing of this repository, so the numbers are fairseq's alone.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import torch

BASE = ["DATA", "--task", "masked_lm", "--arch", "roberta_base", "--batch-size", "8"]

# (name, flags, updates per epoch, each epoch's first validation loss or None)
SCHEDULES = [
    ("polynomial_decay", "--lr-scheduler polynomial_decay --lr 5e-4 --warmup-updates 10 --total-num-update 100 "
                         "--max-update 120", [120], [None]),
    ("polynomial_decay_power", "--lr-scheduler polynomial_decay --lr 1e-3 --warmup-updates 4 --total-num-update 30 "
                               "--power 2 --end-learning-rate 1e-5 --max-update 40", [40], [None]),
    ("polynomial_decay_lrs_force_anneal", "--lr-scheduler polynomial_decay --lr 1e-3,5e-4 --warmup-updates 3 "
                                          "--total-num-update 20 --force-anneal 3 --max-update 24",
     [6] * 4, [None] * 4),
    ("inverse_sqrt", "--lr-scheduler inverse_sqrt --lr 1e-3 --warmup-updates 10 --warmup-init-lr 1e-7", [60], [None]),
    ("inverse_sqrt_no_init", "--lr-scheduler inverse_sqrt --lr 1e-3 --warmup-updates 8", [30], [None]),
    ("fixed", "--lr-scheduler fixed --lr 1e-3", [5], [None]),
    ("fixed_lrs_warmup_anneal", "--lr-scheduler fixed --lr 1e-3,5e-4,2.5e-4 --force-anneal 4 --lr-shrink 0.5 "
                                "--warmup-updates 4", [3] * 6, [None] * 6),
    ("cosine", "--lr-scheduler cosine --lr 1e-3 --warmup-updates 5 --max-update 50", [60], [None]),
    ("cosine_restarts", "--lr-scheduler cosine --lr 1e-3 --warmup-updates 3 --warmup-init-lr 1e-6 --min-lr 1e-5 "
                        "--t-mult 2 --lr-period-updates 10 --lr-shrink 0.5", [80], [None]),
    ("cosine_periods", "--lr-scheduler cosine --lr 2e-3 --lr-period-updates 7 --lr-shrink 0.8 --min-lr 1e-4",
     [30], [None]),
    ("tri_stage", "--lr-scheduler tri_stage --lr 1e-3 --warmup-steps 5 --hold-steps 5 --decay-steps 10 "
                  "--init-lr-scale 0.05 --final-lr-scale 0.02", [30], [None]),
    ("tri_stage_phase_ratio", "--lr-scheduler tri_stage --lr 1e-3 --phase-ratio (0.1,0.4,0.5) --max-update 40",
     [45], [None]),
    ("triangular", "--lr-scheduler triangular --lr 1e-4 --max-lr 1e-3 --lr-period-updates 10 --lr-shrink 0.5",
     [35], [None]),
    ("triangular_shrink_min", "--lr-scheduler triangular --lr 1e-4 --max-lr 1e-3 --lr-period-updates 9 "
                              "--lr-shrink 0.5 --shrink-min", [30], [None]),
    ("step", "--lr-scheduler step --lr 1e-3 --warmup-updates 4 --lr-deacy-period 5 --lr-decay 0.5 --min-lr 1e-4",
     [40], [None]),
    ("step_defaults", "--lr-scheduler step --lr 1e-3", [5], [None]),
    ("reduce_lr_on_plateau", "--lr-scheduler reduce_lr_on_plateau --lr 1e-3 --warmup-updates 3 --lr-patience 1 "
                             "--lr-shrink 0.5 --lr-threshold 0.01", [4] * 7, [3.0, 2.9, 2.95, 2.96, 2.5, 2.6, 2.61]),
    ("reduce_lr_on_plateau_maximize", "--lr-scheduler reduce_lr_on_plateau --lr 1e-3 --lr-shrink 0.3 "
                                      "--maximize-best-checkpoint-metric", [2] * 5, [0.5, 0.6, 0.55, None, 0.55]),
    ("manual", "--lr-scheduler manual --lr 3e-4 --epoch2lr {'1':1e-3,'2-3':5e-4,'4,5':2e-4} "
               "--update2lr {'12':7e-4,'14':6e-4}", [4] * 5, [None] * 5),
    ("manual_epochs_only", "--lr-scheduler manual --lr 3e-4 --epoch2lr {'2':5e-4}", [3] * 3, [None] * 3),
]

# (name, flags, number of parameter tensors): 5 updates with --lr-scheduler inverse_sqrt (a changing lr)
OPTIMIZERS = [
    ("adam", "--optimizer adam --adam-betas (0.9,0.98) --adam-eps 1e-6 --weight-decay 0.01 --lr 0.01", 3),
    ("sgd", "--optimizer sgd --momentum 0.9 --weight-decay 0.01 --lr 0.1", 3),
    ("sgd_plain", "--optimizer sgd --lr 0.1", 3),
    ("nag", "--optimizer nag --momentum 0.9 --weight-decay 0.01 --lr 0.1", 3),
    ("nag_defaults", "--optimizer nag --lr 0.05", 3),
    ("adagrad", "--optimizer adagrad --weight-decay 0.01 --lr 0.1", 3),
    ("adadelta", "--optimizer adadelta --adadelta-rho 0.95 --adadelta-eps 1e-5 --weight-decay 0.01 --lr 1.0", 3),
    ("adamax", "--optimizer adamax --adamax-betas (0.9,0.99) --adamax-eps 1e-7 --weight-decay 0.01 --lr 0.01", 3),
    ("adamax_no_bias_correction", "--optimizer adamax --no-bias-correction --lr 0.01", 3),
    ("adafactor", "--optimizer adafactor --lr 0.01", 3),
    ("adafactor_all_flags", "--optimizer adafactor --lr 0.01 --beta1 0.9 --scale-parameter --weight-decay 0.01 "
                            "--clip-threshold 0.5 --decay-rate -0.7 --adafactor-eps (1e-30,1e-2)", 1),
]
OPTIMIZER_SCHEDULE = "--lr-scheduler inverse_sqrt --warmup-updates 3 --warmup-init-lr {init}"
SHAPES = [(4, 3), (5,), (2, 2, 3)]
UPDATES = 5

LOOP_FLAGS = ("--task masked_lm --arch roberta_base --encoder-layers 1 --encoder-embed-dim 16 "
              "--encoder-ffn-embed-dim 32 --encoder-attention-heads 2 --tokens-per-sample 64 "
              "--sample-break-mode complete --batch-size 128 "
              "--criterion masked_lm --optimizer adam --cpu --log-format json --log-interval 1 "
              "--skip-invalid-size-inputs-valid-test --no-save --seed 1 --max-epoch 4")
LOOPS = [
    ("fixed_lrs_warmup_anneal", "--lr 1e-3,5e-4,2.5e-4 --force-anneal 3 --lr-shrink 0.5 --warmup-updates 3"),
    ("reduce_lr_on_plateau", "--lr-scheduler reduce_lr_on_plateau --lr 1e-3 --warmup-updates 2 --lr-shrink 0.5 "
                             "--lr-threshold 0.5"),
    ("manual", "--lr-scheduler manual --lr 3e-4 --epoch2lr {'1':1e-3,'2-3':5e-4} --update2lr {'10':2e-3}"),
]


def split(flags: str):
    return flags.split()


def parse(argv):
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    args = options.parse_args_and_arch(options.get_training_parser(), argv)
    return convert_namespace_to_omegaconf(args)


def build(cfg, params):
    from fairseq import optim
    from fairseq.optim import lr_scheduler

    optimizer = optim.build_optimizer(cfg.optimizer, params)
    return optimizer, lr_scheduler.build_lr_scheduler(cfg.lr_scheduler, optimizer)


def drive_schedule(optimizer, schedule, epochs, val_losses, on_update=None):
    """fairseq's order: the Trainer builds the schedule and calls step_update(0); load_checkpoint ends with
    lr_step(epoch 1); each epoch: begin_epoch -> step_begin_epoch + step_update(n); step_update(n) after
    update n; then lr_step(epoch, first valid loss) -> step + step_update(n)."""
    n, used, ends = 0, [], []
    schedule.step_update(0)
    schedule.step(1, None)
    schedule.step_update(0)
    init = optimizer.get_lr()
    for epoch, (updates, val) in enumerate(zip(epochs, val_losses), start=1):
        schedule.step_begin_epoch(epoch)
        schedule.step_update(n)
        for _ in range(updates):
            used.append(optimizer.get_lr())
            if on_update is not None:
                on_update(n)
            n += 1
            schedule.step_update(n)
        schedule.step(epoch, val)
        schedule.step_update(n)
        ends.append(optimizer.get_lr())
    return {"lr_init": init, "lr_used": used, "lr_epoch_end": ends}


def schedule_cases():
    out = []
    for name, flags, epochs, vals in SCHEDULES:
        argv = BASE + ["--optimizer", "sgd"] + split(flags)
        optimizer, schedule = build(parse(argv), [torch.nn.Parameter(torch.zeros(1))])
        out.append({"name": name, "argv": argv, "epochs": epochs, "val_losses": vals,
                    **drive_schedule(optimizer, schedule, epochs, vals), "state": _plain(schedule.state_dict())})
    return out


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if torch.is_tensor(value):
        return value.tolist()
    return value


def optimizer_cases():
    g = torch.Generator().manual_seed(12345)
    init = [torch.randn(s, generator=g) for s in SHAPES]
    grads = [[torch.randn(s, generator=g) for s in SHAPES] for _ in range(UPDATES)]
    out = []
    for name, flags, count in OPTIMIZERS:
        lr = float(flags.split("--lr ")[1].split()[0])
        argv = BASE + split(flags) + split(OPTIMIZER_SCHEDULE.format(init=lr / 10))
        cfg = parse(argv)
        params = [torch.nn.Parameter(p.clone()) for p in init[:count]]
        optimizer, schedule = build(cfg, params)

        def update(n):
            for p, grad in zip(params, grads[n]):
                p.grad = grad.clone()
            optimizer.step()
            optimizer.zero_grad()

        trace = drive_schedule(optimizer, schedule, [UPDATES], [None], on_update=update)
        state = optimizer.optimizer.state
        out.append({"name": name, "argv": argv, "params": count, "lr_used": trace["lr_used"],
                    "optimizer_class": type(optimizer).__name__,
                    "state_keys": [sorted(state[p]) for p in params],
                    "final": [p.detach().tolist() for p in params]})
    return {"init": [p.tolist() for p in init], "grads": [[x.tolist() for x in step] for step in grads],
            "cases": out}


def small_data(peer_data: str, folder: str) -> str:
    """The fixture's valid split as both train and valid (separate files: fairseq caches one iterator per
    dataset object, so one split serving as both would share it): ~4 updates an epoch at --batch-size 128."""
    for name in ("dict.txt", "train.bin", "train.idx", "valid.bin", "valid.idx"):
        source = "dict.txt" if name == "dict.txt" else "valid" + name[name.index("."):]
        os.symlink(os.path.join(peer_data, source), os.path.join(folder, name))
    return folder


def loop_cases(peer_data: str):
    from fairseq import trainer as fairseq_trainer
    from fairseq_cli import train

    out = []
    for name, flags in LOOPS:
        with tempfile.TemporaryDirectory() as save_dir, tempfile.TemporaryDirectory() as data:
            argv = [small_data(peer_data, data)] + split(LOOP_FLAGS) + split(flags)
            cfg = parse(argv + ["--save-dir", save_dir])
            seen = []
            original = fairseq_trainer.Trainer.train_step

            def recording(self, samples, raise_oom=False):
                seen.append((self.get_num_updates(), self.get_lr()))
                return original(self, samples, raise_oom)

            fairseq_trainer.Trainer.train_step = recording
            try:
                train.main(cfg)
            finally:
                fairseq_trainer.Trainer.train_step = original
            out.append({"name": name, "argv": argv[1:], "lr_used": [lr for _, lr in seen],
                        "num_updates": [n for n, _ in seen]})
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "fixtures",
                                                  "fairseq-peer", "data-bin"))
    p.add_argument("--parts", default="schedules,optimizers,loops")
    a = p.parse_args()
    import fairseq

    torch.set_num_threads(1)
    ref = {"fairseq": fairseq.__version__, "torch": torch.__version__, "python": sys.version.split()[0]}
    parts = a.parts.split(",")
    if "schedules" in parts:
        ref["schedules"] = schedule_cases()
    if "optimizers" in parts:
        ref["optimizers"] = optimizer_cases()
    if "loops" in parts:
        ref["loops"] = loop_cases(os.path.abspath(a.data))
    with open(a.out, "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
