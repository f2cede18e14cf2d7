"""fairseq.logging.metrics (also importable as fairseq.metrics): named, nestable metric aggregation.

Criteria log with `log_scalar` / `log_derived` inside their `reduce_metrics`; every value goes to
every *active* aggregator. `aggregate(name)` activates a named MetersDict for a block (reused when the
name comes back, so "train" accumulates across updates); nesting adds aggregators, `new_root=True`
hides the outer ones for the block. The "default" aggregator is always active outside any new root.
"""
from __future__ import annotations

import contextlib
import uuid
from collections import OrderedDict, defaultdict
from typing import Callable, Dict, List, Optional

from fairseq.logging.meters import AverageMeter, MetersDict, StopwatchMeter, SumMeter, TimeMeter

__all__ = [
    "reset", "aggregate", "get_active_aggregators", "log_scalar", "log_scalar_sum", "log_derived",
    "log_speed", "log_start_time", "log_stop_time", "log_custom", "reset_meter", "reset_meters",
    "get_meter", "get_meters", "get_smoothed_value", "get_smoothed_values", "state_dict",
    "load_state_dict",
]

_aggregators: "OrderedDict[str, MetersDict]" = OrderedDict()
_active_aggregators: "OrderedDict[str, MetersDict]" = OrderedDict()
_active_aggregators_cnt: Dict[str, int] = defaultdict(int)


def reset() -> None:
    """Forget every aggregator; only "default" remains, active."""
    _aggregators.clear()
    _active_aggregators.clear()
    _active_aggregators_cnt.clear()
    _aggregators["default"] = MetersDict()
    _active_aggregators["default"] = _aggregators["default"]
    _active_aggregators_cnt["default"] = 1


reset()


@contextlib.contextmanager
def aggregate(name: Optional[str] = None, new_root: bool = False):
    """Activate the aggregator `name` (a fresh, unnamed one if None) for the block; yields its MetersDict."""
    if name is None:
        name = str(uuid.uuid4())
        agg = MetersDict()  # unnamed: not kept in _aggregators, so it is gone once the caller drops it
    else:
        agg = _aggregators.setdefault(name, MetersDict())
    if new_root:
        backup = _active_aggregators.copy()
        backup_cnt = _active_aggregators_cnt.copy()
        _active_aggregators.clear()
        _active_aggregators_cnt.clear()
    _active_aggregators[name] = agg
    _active_aggregators_cnt[name] += 1
    try:
        yield agg
    finally:
        _active_aggregators_cnt[name] -= 1
        if _active_aggregators_cnt[name] == 0 and name in _active_aggregators:
            del _active_aggregators[name]
        if new_root:
            _active_aggregators.clear()
            _active_aggregators.update(backup)
            _active_aggregators_cnt.clear()
            _active_aggregators_cnt.update(backup_cnt)


def get_active_aggregators() -> List[MetersDict]:
    return list(_active_aggregators.values())


def _add_to_active(key: str, make_meter: Callable, priority: int):
    for agg in get_active_aggregators():
        if key not in agg:
            agg.add_meter(key, make_meter(), priority)
        yield agg[key]


def log_scalar(key: str, value, weight: float = 1, priority: int = 10, round: Optional[int] = None) -> None:
    """Add `value` with `weight` to the weighted average `key` of every active aggregator."""
    for meter in _add_to_active(key, lambda: AverageMeter(round=round), priority):
        meter.update(value, weight)


def log_scalar_sum(key: str, value, priority: int = 10, round: Optional[int] = None) -> None:
    """Add `value` to the running sum `key` of every active aggregator."""
    for meter in _add_to_active(key, lambda: SumMeter(round=round), priority):
        meter.update(value)


def log_derived(key: str, fn: Callable[[MetersDict], float], priority: int = 20) -> None:
    """Log `key` as fn(meters), computed whenever the aggregator's values are read."""
    for _ in _add_to_active(key, lambda: MetersDict._DerivedMeter(fn), priority):
        pass


def log_speed(key: str, value: float, priority: int = 30, round: Optional[int] = None) -> None:
    """Add `value` events to the per-second rate `key` (the rate's clock starts at the first call)."""
    for agg in get_active_aggregators():
        if key not in agg:
            agg.add_meter(key, TimeMeter(round=round), priority)
            agg[key].reset()  # the clock starts now
        else:
            agg[key].update(value)


def log_start_time(key: str, priority: int = 40, round: Optional[int] = None) -> None:
    for meter in _add_to_active(key, lambda: StopwatchMeter(round=round), priority):
        meter.start()


def log_stop_time(key: str, weight: float = 0.0, prehook: Optional[Callable] = None) -> None:
    for agg in get_active_aggregators():
        if key in agg:
            agg[key].stop(weight, prehook)


def log_custom(new_meter_fn: Callable, key: str, *args, priority: int = 50, **kwargs) -> None:
    """Log through a meter class of the caller's: new_meter_fn() builds it, meter.update(*args, **kwargs)."""
    for meter in _add_to_active(key, new_meter_fn, priority):
        meter.update(*args, **kwargs)


def reset_meter(name: str, key: str) -> None:
    meter = get_meter(name, key)
    if meter is not None:
        meter.reset()


def reset_meters(name: str) -> None:
    meters = get_meters(name)
    if meters is not None:
        meters.reset()


def get_meter(name: str, key: str):
    if name not in _aggregators:
        return None
    return _aggregators[name].get(key, None)


def get_meters(name: str) -> Optional[MetersDict]:
    return _aggregators.get(name, None)


def get_smoothed_value(name: str, key: str) -> float:
    return _aggregators[name].get_smoothed_value(key)


def get_smoothed_values(name: str) -> Dict[str, float]:
    return _aggregators[name].get_smoothed_values()


def state_dict() -> "OrderedDict[str, object]":
    return OrderedDict((name, agg.state_dict()) for name, agg in _aggregators.items())


def load_state_dict(state_dict) -> None:
    for name, agg_state in state_dict.items():
        _aggregators[name] = MetersDict()
        _aggregators[name].load_state_dict(agg_state)
