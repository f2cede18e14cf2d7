"""PLACEHOLDER (api branch): the few names of fairseq.logging.metrics that criteria use
(aggregate, log_scalar, log_derived, get_smoothed_values). The data branch owns the real module;
at merge, take that one. Semantics follow fairseq: values logged inside `with aggregate():` go to
every active aggregation; a scalar's smoothed value is its weighted average."""
from __future__ import annotations

import contextlib
from typing import Callable, Dict, List


class _Aggregator:
    def __init__(self):
        self.sums: Dict[str, float] = {}
        self.weights: Dict[str, float] = {}
        self.derived: Dict[str, Callable] = {}

    def get_smoothed_values(self) -> Dict[str, float]:
        meters = {k: _Avg(self.sums[k], self.weights[k]) for k in self.sums}
        out = {k: m.avg for k, m in meters.items()}
        for k, fn in self.derived.items():
            out[k] = fn(meters)
        return out


class _Avg:
    def __init__(self, total, weight):
        self.sum, self.count = total, weight
        self.avg = total / weight if weight else 0.0


_active: List[_Aggregator] = []


@contextlib.contextmanager
def aggregate(name=None, new_root: bool = False):
    agg = _Aggregator()
    saved = list(_active)
    if new_root:
        _active.clear()
    _active.append(agg)
    try:
        yield agg
    finally:
        _active[:] = saved


def log_scalar(key: str, value, weight: float = 1, priority: int = 10, round=None) -> None:
    v = float(value)
    for agg in _active:
        agg.sums[key] = agg.sums.get(key, 0.0) + v * float(weight)
        agg.weights[key] = agg.weights.get(key, 0.0) + float(weight)


def log_derived(key: str, fn: Callable, priority: int = 20) -> None:
    for agg in _active:
        agg.derived[key] = fn
