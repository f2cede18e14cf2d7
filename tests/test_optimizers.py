"""fairseq 0.12.2's --optimizer choices: parameters after 5 updates equal the real fairseq's on the same
command line, from the same parameters and gradients (tests/data/fairseq_optim_reference.json, made by
tests/make_optim_reference.py with fairseq itself); lamb (apex-only in fairseq) against the LAMB paper's
update; state keys and class names as fairseq's, so optimizer states load either way; resume = uninterrupted."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from fairseq import options, registry
from fairseq.optim import build_optimizer
from fairseq.optim.adafactor import Adafactor
from fairseq.optim.fused_lamb import Lamb
from fairseq.optim.lr_scheduler.time_clock import build_schedule
from test_lr_schedulers import drive

REF = json.loads((Path(__file__).parent / "data" / "fairseq_optim_reference.json").read_text())
OPT = REF["optimizers"]
CASES = {case["name"]: case for case in OPT["cases"]}
EXACT = {"sgd", "sgd_plain", "nag", "nag_defaults", "adagrad", "adadelta", "adamax", "adamax_no_bias_correction",
         "adafactor", "adafactor_all_flags"}  # the same ops in the same order: equal to the bit


def parse(argv):
    return options.parse_args_and_arch(options.get_training_parser(), list(argv))


def run(argv, count, updates=5, params=None, state=None):
    """Our optimizer and schedule on `argv`, from the reference's parameters and gradients."""
    args = parse(argv)
    params = params or [torch.nn.Parameter(torch.tensor(p)) for p in OPT["init"][:count]]
    optimizer = build_optimizer(args, params)
    if state is not None:
        optimizer.load_state_dict(state)
    schedule = build_schedule(args, optimizer, lambda: 0.0)

    def update(n):
        for p, g in zip(params, OPT["grads"][n]):
            p.grad = torch.tensor(g)
        optimizer.step()
        optimizer.zero_grad()

    trace = drive(schedule, [updates], [None], on_update=update)
    return optimizer, params, trace


def test_every_fairseq_cpu_optimizer_is_covered():
    assert {c["argv"][c["argv"].index("--optimizer") + 1] for c in OPT["cases"]} == set(
        registry.choices("optimizer")) - {"lamb"}  # lamb: apex and CUDA only in fairseq; see the paper test


@pytest.mark.parametrize("name", sorted(CASES))
def test_parameters_after_updates_equal_fairseq(name):
    case = CASES[name]
    optimizer, params, trace = run(case["argv"], case["params"])
    assert trace["lr_used"] == case["lr_used"]
    assert type(optimizer).__name__ == case["optimizer_class"]  # the checkpoint's optimizer_name
    assert [sorted(optimizer.optimizer.state[p]) for p in params] == case["state_keys"]
    for p, expected in zip(params, case["final"]):
        expected = torch.tensor(expected)
        if name in EXACT:
            assert torch.equal(p.detach(), expected), name
        else:  # adam: our fused kernel is fairseq's formula, a few float32 roundings apart (tests/test_optim.py)
            torch.testing.assert_close(p.detach(), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", ["sgd", "nag", "adagrad", "adadelta", "adamax", "adafactor_all_flags", "adam"])
def test_resumed_optimizer_equals_uninterrupted(name):
    """2 updates, state_dict -> a fresh optimizer (as a checkpoint resume builds it), 3 more == 5 straight."""
    case = CASES[name]
    _, straight, _ = run(case["argv"], case["params"])
    first, params, _ = run(case["argv"], case["params"], updates=2)
    state = first.state_dict()
    fresh = [torch.nn.Parameter(p.detach().clone()) for p in params]
    args = parse(case["argv"])
    resumed = build_optimizer(args, fresh)
    resumed.load_state_dict(state)
    schedule = build_schedule(args, resumed, lambda: 0.0)
    for n in range(2, 5):
        schedule.step_update(n)
        for p, g in zip(fresh, OPT["grads"][n]):
            p.grad = torch.tensor(g)
        resumed.step()
        resumed.zero_grad()
    for a, b in zip(straight, fresh):
        assert torch.equal(a.detach(), b.detach()), name


def paper_lamb(params, grads, lrs, betas, eps, wd):
    """Algorithm 2 of You et al. (2019), one layer (tensor) at a time, in float64."""
    b1, b2 = betas
    xs = [p.double().clone() for p in params]
    ms = [torch.zeros_like(x) for x in xs]
    vs = [torch.zeros_like(x) for x in xs]
    for t, (step_grads, lr) in enumerate(zip(grads, lrs), start=1):
        for i, g in enumerate(step_grads):
            g = g.double()
            ms[i] = b1 * ms[i] + (1 - b1) * g
            vs[i] = b2 * vs[i] + (1 - b2) * g * g
            m_hat, v_hat = ms[i] / (1 - b1 ** t), vs[i] / (1 - b2 ** t)
            r = m_hat / (v_hat.sqrt() + eps) + wd * xs[i]
            x_norm, r_norm = xs[i].norm().item(), r.norm().item()
            trust = x_norm / r_norm if x_norm > 0 and r_norm > 0 else 1.0
            xs[i] = xs[i] - lr * trust * r
    return xs


@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_lamb_is_the_papers_update(wd):
    g = torch.Generator().manual_seed(7)
    params = [torch.randn(6, 4, generator=g), torch.zeros(5), torch.randn(3, generator=g)]  # a zero tensor: trust 1
    grads = [[torch.randn(p.shape, generator=g) for p in params] for _ in range(6)]
    lrs = [1e-3, 2e-3, 3e-3, 3e-3, 2e-3, 1e-3]
    expected = paper_lamb(params, grads, lrs, (0.9, 0.98), 1e-6, wd)
    ps = [torch.nn.Parameter(p.clone()) for p in params]
    args = parse(["D", "-a", "roberta_base", "--batch-size", "8", "--optimizer", "lamb", "--lamb-betas", "(0.9, 0.98)",
                  "--lamb-eps", "1e-6", "--weight-decay", str(wd)])
    optimizer = build_optimizer(args, ps)
    for step_grads, lr in zip(grads, lrs):
        optimizer.set_lr(lr)
        for p, gr in zip(ps, step_grads):
            p.grad = gr.clone()
        optimizer.step()
    for p, e in zip(ps, expected):
        torch.testing.assert_close(p.detach().double(), e, rtol=1e-5, atol=1e-7)
    assert [optimizer.optimizer.state[p]["step"] for p in ps] == [6, 6, 6]


def test_lamb_loads_apex_state_with_its_group_step():
    """apex's FusedLAMB keeps `step` per group, not per parameter: such a state continues at that step."""
    p = torch.nn.Parameter(torch.ones(3))
    opt = Lamb([p], lr=1e-2)
    p.grad = torch.ones(3)
    opt.step()
    state = opt.state_dict()
    apex_like = {"state": {0: {k: v for k, v in state["state"][0].items() if k != "step"}},
                 "param_groups": [dict(state["param_groups"][0], step=1)]}
    q, r = torch.nn.Parameter(p.detach().clone()), torch.nn.Parameter(p.detach().clone())
    ours, theirs = Lamb([q], lr=1e-2), Lamb([r], lr=1e-2)
    ours.load_state_dict(state)
    theirs.load_state_dict(apex_like)
    for opt_, x in ((ours, q), (theirs, r)):
        x.grad = torch.full((3,), 0.5)
        opt_.step()
    assert torch.equal(q, r) and theirs.state[r]["step"] == 2


def test_adafactor_scales_each_parameter_by_its_own_rms():
    """The one documented difference from fairseq (fairseq/optim/adafactor.py): under --scale-parameter each
    parameter's step is lr * RMS(itself); fairseq compounds the earlier parameters' RMS within a step.
    So a step over three tensors equals three one-tensor steps (which fairseq agrees with: see above)."""
    g = torch.Generator().manual_seed(3)
    tensors = [torch.randn(4, 3, generator=g) * 5, torch.randn(5, generator=g) * 0.1, torch.randn(2, 3, generator=g)]
    grads = [torch.randn(t.shape, generator=g) for t in tensors]
    kw = dict(lr=0.01, scale_parameter=True, beta1=0.9, weight_decay=0.01)
    together = [torch.nn.Parameter(t.clone()) for t in tensors]
    opt = Adafactor(together, **kw)
    for p, gr in zip(together, grads):
        p.grad = gr.clone()
    opt.step()
    for t, gr, p in zip(tensors, grads, together):
        alone = torch.nn.Parameter(t.clone())
        alone.grad = gr.clone()
        Adafactor([alone], **kw).step()
        assert torch.equal(alone, p)


def test_adafactor_relative_step_is_refused_as_in_fairseq(capsys):
    from fairseq_cli import train

    with pytest.raises(SystemExit) as e:
        train.cli_main(["D", "-a", "roberta_base", "--batch-size", "8", "--optimizer", "adafactor", "--relative-step"])
    err = capsys.readouterr().err.strip()
    assert e.value.code != 0 and len(err.splitlines()) == 1 and "--relative-step" in err
    with pytest.raises(ValueError, match="relative"):
        Adafactor([torch.nn.Parameter(torch.ones(2))], lr=0.1, relative_step=True)


def test_adafactor_under_fsdp_is_refused_at_parse_time():
    with pytest.raises(ValueError, match="adafactor does not run with --ddp-backend fully_sharded"):
        parse(["D", "-a", "roberta_base", "--batch-size", "8", "--optimizer", "adafactor",
               "--ddp-backend", "fully_sharded"])


@pytest.mark.parametrize("flag, value, message", [
    ("--adamax-betas", "(0.9)", "--adamax-betas '\\(0.9\\)': expected two floats"),
    ("--lamb-betas", "x", "--lamb-betas 'x': expected two floats"),
    ("--adafactor-eps", "(1e-30,)", "--adafactor-eps '\\(1e-30,\\)': expected two floats"),
])
def test_tuple_flags_are_refused_at_parse_time(flag, value, message):
    optimizer = {"--adamax-betas": "adamax", "--lamb-betas": "lamb", "--adafactor-eps": "adafactor"}[flag]
    with pytest.raises(ValueError, match=message):
        parse(["D", "-a", "roberta_base", "--batch-size", "8", "--optimizer", optimizer, flag, value])


def test_nag_rescales_its_velocity_when_the_lr_changes():
    """NAG's buffer holds lr-scaled velocity; after an lr change it is rescaled by lr / lr_old (fairseq)."""
    from fairseq.optim.nag import NAG

    p = torch.nn.Parameter(torch.zeros(1))
    opt = NAG([p], lr=0.1, momentum=0.5)
    p.grad = torch.ones(1)
    opt.step()  # buf = -0.1; p = -(1 + 0.5) * 0.1 = -0.15
    opt.param_groups[0]["lr"] = 0.2
    opt.step()  # c = 2: p += 0.25 * 2 * -0.1 - 1.5 * 0.2; buf = 0.5 * 2 * -0.1 - 0.2
    assert math.isclose(p.item(), -0.15 - 0.05 - 0.3, rel_tol=1e-6)
    assert math.isclose(opt.state[p]["momentum_buffer"].item(), -0.3, rel_tol=1e-6)
