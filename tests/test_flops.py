"""The ideal FLOP ratios against hand counts (fairseq/flops.py)."""
import pytest

from fairseq import flops


def _layer(nq, nkv, E=2, F=4):
    return 2 * nq * E * E + 2 * nkv * E * E + 2 * nq * nkv * E + 2 * nq * E * F


# L=4: d=1, last_kept=2: layer 0 full, 1 cross, 2 kept, 3 full. T=8, K=4, E=2, F=4.
DROP = (2 * _layer(8, 8) + _layer(4, 8) + _layer(4, 4)) / (4 * _layer(8, 8))


def test_ideal_step_ratio_by_hand():
    assert flops.ideal_step_ratio(12, 512, 768, 3072, 0.0) == 1.0
    assert flops.encoder_layer_macs(8, 4, 2, 4) == _layer(8, 4)
    assert flops.token_drop_step_ratio(4, 8, 2, 4, 0.5) == pytest.approx(DROP)
    assert flops.ideal_step_ratio(4, 8, 2, 4, 0.5) == pytest.approx(DROP)
    # ScTD's full pass: layers 0..2 on all 8 positions, the last layer for <s> alone (w_full = 0); all of it otherwise
    full_pass = (3 * _layer(8, 8) + _layer(1, 8)) / (4 * _layer(8, 8))
    assert flops.sctd_full_pass_ratio(4, 8, 2, 4) == pytest.approx(full_pass)
    assert flops.ideal_step_ratio(4, 8, 2, 4, 0.5, sctd_interval=10) == pytest.approx(DROP + full_pass / 10)
    assert flops.ideal_step_ratio(4, 8, 2, 4, 0.5, 10, full_mlm_weight=0.5) == pytest.approx(DROP + 0.1)


def test_schedule_ideal_ratio_counts_full_phases_and_sctd_passes():
    # 10 updates, u=0,1 warmup (full), u=9 final (full); u=2..8 drop; ScTD every 4: u=4 and u=8 add a full pass.
    got = flops.schedule_ideal_ratio(4, 8, 2, 4, 0.5, sctd_interval=4, total_updates=10,
                                     warmup_updates=2, final_full_updates=1)
    full_pass = flops.sctd_full_pass_ratio(4, 8, 2, 4)
    assert got == pytest.approx((3 * 1.0 + 7 * DROP + 2 * full_pass) / 10)
    trained_full_pass = flops.schedule_ideal_ratio(4, 8, 2, 4, 0.5, 4, 10, 2, 1, full_mlm_weight=0.5)
    assert trained_full_pass == pytest.approx((3 * 1.0 + 7 * DROP + 2 * 1.0) / 10)
    no_schedule = flops.schedule_ideal_ratio(4, 8, 2, 4, 0.5, sctd_interval=0, total_updates=7)
    assert no_schedule == pytest.approx(DROP)
    assert flops.schedule_ideal_ratio(4, 8, 2, 4, 0.0, sctd_interval=10, total_updates=5) == 1.0
    with pytest.raises(ValueError, match="total_updates"):
        flops.schedule_ideal_ratio(4, 8, 2, 4, 0.5, sctd_interval=0, total_updates=0)
