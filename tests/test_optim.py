"""fairseq Adam, lr schedules and the fp16 loss scaler against slow references and fairseq's traces."""
import json
import math
from types import SimpleNamespace

import pytest
import torch

from fairseq.optim.adam import Adam, FairseqAdam, parse_betas
from fairseq.optim.loss_scaler import DynamicLossScaler, default_scale_window
from fairseq.optim.lr_scheduler import FixedSchedule, InverseSquareRootSchedule, PolynomialDecaySchedule


def reference_adam(params, grads_per_step, lr, betas, eps, wd):
    """The spec's formula, one tensor at a time, in float64 then cast (slow and obvious)."""
    b1, b2 = betas
    ps = [p.double().clone() for p in params]
    m = [torch.zeros_like(p) for p in ps]
    v = [torch.zeros_like(p) for p in ps]
    steps = [0] * len(ps)
    for grads in grads_per_step:
        for i, g in enumerate(grads):
            if g is None:
                continue
            g = g.double()
            steps[i] += 1
            t = steps[i]
            ps[i] = ps[i] - lr * wd * ps[i]
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            ps[i] = ps[i] - lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m[i] / (v[i].sqrt() + eps)
    return ps, steps


KERNELS = {"fused": dict(), "foreach": dict(fused=False), "per-tensor": dict(foreach=False)}


@pytest.mark.parametrize("eps", [1e-6, 1e-2])  # a large eps shows where eps enters (fused: eps / sqrt(1 - b2^t))
@pytest.mark.parametrize("kernel", list(KERNELS))
def test_adam_matches_spec_formula(kernel, eps):
    g = torch.Generator().manual_seed(0)
    params = [torch.randn(5, 3, generator=g), torch.randn(7, generator=g), torch.randn(2, 2, generator=g)]
    grads = [[torch.randn(p.shape, generator=g) if not (s == 1 and i == 2) else None for i, p in enumerate(params)]
             for s in range(4)]
    expected, steps = reference_adam(params, grads, lr=1e-2, betas=(0.9, 0.98), eps=eps, wd=0.01)
    ps = [torch.nn.Parameter(p.clone()) for p in params]
    opt = Adam(ps, lr=1e-2, betas=(0.9, 0.98), eps=eps, weight_decay=0.01, **KERNELS[kernel])
    for step_grads in grads:
        for p, gr in zip(ps, step_grads):
            p.grad = None if gr is None else gr.clone()
        opt.step()
    for p, e in zip(ps, expected):
        torch.testing.assert_close(p.detach().double(), e, rtol=0, atol=1e-6)
    assert [opt.state[p]["step"] for p in ps] == steps == [4, 4, 3]


@pytest.mark.parametrize("kernel", ["fused", "foreach"])
def test_fast_kernels_equal_per_tensor_to_rounding(kernel):
    """foreach: bit for bit; fused: one rounding of p per step apart (the update is the same formula)."""
    g = torch.Generator().manual_seed(1)
    shapes = [(64, 32), (32,), (100, 8), (1,)]
    a = [torch.nn.Parameter(torch.randn(s, generator=g)) for s in shapes]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    fast = Adam(a, lr=3e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1, **KERNELS[kernel])
    slow = Adam(b, lr=3e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1, foreach=False)
    for _ in range(5):
        for pa, pb in zip(a, b):
            gr = torch.randn(pa.shape, generator=g)
            pa.grad, pb.grad = gr.clone(), gr.clone()
        fast.step()
        slow.step()
    for pa, pb in zip(a, b):
        if kernel == "foreach":
            assert torch.equal(pa, pb) and torch.equal(fast.state[pa]["exp_avg_sq"], slow.state[pb]["exp_avg_sq"])
        else:
            torch.testing.assert_close(pa, pb, rtol=1e-6, atol=1e-8)  # a few ulp after 5 steps
            torch.testing.assert_close(fast.state[pa]["exp_avg"], slow.state[pb]["exp_avg"], rtol=1e-6, atol=1e-7)  # lerp
            torch.testing.assert_close(fast.state[pa]["exp_avg_sq"], slow.state[pb]["exp_avg_sq"], rtol=1e-6, atol=0)


def test_fairseq_adam_state_roundtrip_and_betas():
    assert parse_betas("(0.9, 0.98)") == (0.9, 0.98) and parse_betas("0.9,0.999") == (0.9, 0.999)
    with pytest.raises(ValueError, match="--adam-betas"):
        parse_betas("(0.9)")
    args = SimpleNamespace(lr=[1e-3], adam_betas="(0.9,0.98)", adam_eps=1e-6, weight_decay=0.0)
    p = torch.nn.Parameter(torch.ones(3))
    opt = FairseqAdam(args, [p])
    p.grad = torch.ones(3)
    opt.step()
    sd = opt.state_dict()
    q = torch.nn.Parameter(p.detach().clone())
    opt2 = FairseqAdam(args, [q])
    opt2.load_state_dict(sd)
    assert opt2.optimizer.state[q]["step"] == 1
    assert opt2.optimizer.param_groups[0]["betas"] == (0.9, 0.98)


class _Opt:
    lr = None

    def set_lr(self, lr):
        self.lr = lr

    def get_lr(self):
        return self.lr


def test_polynomial_decay_matches_fairseq_trace(peer_dir):
    ref = json.loads((peer_dir / "reference" / "train_trace_lr30.json").read_text())
    args = SimpleNamespace(lr=[5e-4], warmup_updates=10, end_learning_rate=0.0, power=1.0,
                           total_num_update=100, max_update=30, force_anneal=None)
    sched = PolynomialDecaySchedule(args, _Opt())
    assert sched.step_update(0) == ref["records"][1]["lr_used_for_this_update"]
    for rec in ref["records"][1:]:
        n = rec["num_updates_before"]
        assert sched.step_update(n) == rec["lr_used_for_this_update"]  # exact doubles, float noise included
        assert sched.step_update(n + 1) == rec["lr_after_update_as_logged"]
    assert sched.step_update(100) == 0.0 and sched.step_update(150) == 0.0


def test_other_schedules_and_errors():
    inv = InverseSquareRootSchedule(SimpleNamespace(lr=[1e-3], warmup_updates=4, warmup_init_lr=-1), _Opt())
    assert [inv.step_update(n) for n in (0, 2)] == [0.0, 5e-4]
    assert inv.step_update(16) == pytest.approx(1e-3 * 2 / 4)
    fixed = FixedSchedule(SimpleNamespace(lr=[1e-3], warmup_updates=2, force_anneal=None, lr_shrink=0.1), _Opt())
    assert [fixed.step_update(n) for n in (0, 1, 5)] == [5e-4, 1e-3, 1e-3]
    with pytest.raises(ValueError, match="--total-num-update"):
        PolynomialDecaySchedule(SimpleNamespace(lr=[1e-3], warmup_updates=0, end_learning_rate=0.0, power=1.0,
                                                total_num_update=None, max_update=0, force_anneal=None), _Opt())


def test_loss_scaler_semantics():
    s = DynamicLossScaler(init_scale=8, scale_window=2, min_loss_scale=1e-4)
    with pytest.raises(OverflowError):
        s.check_overflow(float("inf"))
    assert s.loss_scale == 4
    s.check_overflow(1.0)  # finite: nothing happens
    s.update()  # iter 1 - last overflow 0 = 1: no growth
    assert s.loss_scale == 4
    s.update()  # iter 2 - 0 = 2: grows
    assert s.loss_scale == 8
    floor = DynamicLossScaler(init_scale=2, scale_window=100, threshold=1.0)
    for _ in range(3):
        with pytest.raises(OverflowError):
            floor.check_overflow(float("nan"))
    assert floor.loss_scale == 1.0
    tiny = DynamicLossScaler(init_scale=2e-4, scale_window=10, min_loss_scale=1e-4)
    with pytest.raises(FloatingPointError, match="lower --lr"):
        tiny.check_overflow(float("inf"))
    assert tiny.loss_scale == 2e-4
    assert default_scale_window(1, 2) == 8192
    restored = DynamicLossScaler()
    restored.load_state_dict(s.state_dict())
    assert restored.state_dict() == s.state_dict()
