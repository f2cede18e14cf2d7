"""Meters for the train/valid logs, with fairseq's keys, order and rounding (FAIRSEQ_SPEC section 8).

A window accumulates the per-update logging outputs as *sums* (tensors stay tensors, so nothing
forces a device sync until the window is read at a log interval). Reading it turns the sums into
fairseq's logged values: the criterion's metrics (loss in bits, ppl, extras), [drop_rate], then wps,
ups, wpb, bsz, num_updates, lr, gnorm, [clip], [loss_scale], train_wall, wall.

drop_rate (train logs under token dropping only): summed td_dropped / summed td_positions over the
window, i.e. the fraction of all batch positions (padding included) that the middle layers did not
process. 0 in full phases; 1 - K/T in dropping phases (T the padded batch length, K = kept per row).
"""
from __future__ import annotations

import time
from collections import OrderedDict
from numbers import Number
from typing import Callable, Dict, Iterable, Optional

import torch


def safe_round(value, ndigits: int):
    if torch.is_tensor(value):
        value = value.item()
    if ndigits is None:
        return value
    return round(float(value), ndigits)


def get_perplexity(loss: float, base: float = 2) -> float:
    """base ** loss, inf when that overflows a float (fairseq.utils.get_perplexity): a diverging loss
    is logged as ppl inf and training goes on to the divergence check instead of crashing here."""
    try:
        return base ** float(loss)
    except OverflowError:
        return float("inf")


def format_stat(value) -> str:
    """fairseq's formatting: numbers with '{:g}', everything else via str()."""
    if torch.is_tensor(value):
        value = value.item()
    if isinstance(value, Number):
        return "{:g}".format(value)
    return str(value)


def add_logs(total: Dict, log: Dict, scale: float = 1.0) -> None:
    """total[k] += log[k] for every numeric entry (tensors are accumulated lazily, detached)."""
    for key, value in log.items():
        if torch.is_tensor(value):
            value = value.detach()
            if value.numel() != 1:
                continue
            value = value.reshape(())
        elif not isinstance(value, Number) or isinstance(value, bool):
            continue
        if scale != 1.0:
            value = value * scale
        prev = total.get(key)
        total[key] = value if prev is None else prev + value


def to_floats(d: Dict) -> Dict[str, float]:
    """One sync: turn accumulated sums (tensors or numbers) into python floats."""
    tensors = [k for k, v in d.items() if torch.is_tensor(v)]
    out = {k: float(v) for k, v in d.items() if not torch.is_tensor(v)}
    if tensors:
        values = torch.stack([d[k].double().cpu() for k in tensors]).tolist()
        out.update(zip(tensors, values))
    return out


def criterion_stats(reduce_metrics: Callable, sums: Dict[str, float]) -> "OrderedDict[str, float]":
    """Criterion metrics from summed logging outputs, rounded like fairseq (ppl 2 digits, rest 3)."""
    out = OrderedDict()
    for key, value in reduce_metrics([sums]).items():
        out[key] = safe_round(value, 2 if key.endswith("ppl") else 3)
    return out


class TrainWindow:
    """Sums over one log interval (train_inner) or one epoch (train)."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.sums: Dict = {}
        self.updates = 0
        self.gnorm = 0.0
        self.clipped = 0
        self.train_wall = 0.0
        self.start = time.perf_counter()

    def add(self, log: Dict, gnorm, clipped, seconds: float) -> None:
        add_logs(self.sums, log)
        self.updates += 1
        self.gnorm = self.gnorm + (gnorm.detach() if torch.is_tensor(gnorm) else gnorm)
        self.clipped = self.clipped + clipped
        self.train_wall += seconds

    def stats(self, reduce_metrics: Callable, num_updates: int, lr: float, wall: float,
              clip_norm: float = 0.0, loss_scale: Optional[float] = None) -> "OrderedDict[str, object]":
        sums = to_floats(self.sums)
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        n = max(self.updates, 1)
        ntokens = sums.get("ntokens", 0.0)
        out = criterion_stats(reduce_metrics, sums)
        if sums.get("td_positions", 0.0) > 0:
            out["drop_rate"] = safe_round(sums["td_dropped"] / sums["td_positions"], 3)
        out["wps"] = safe_round(ntokens / elapsed, 1)
        out["ups"] = safe_round(self.updates / elapsed, 2)
        out["wpb"] = safe_round(ntokens / n, 1)
        out["bsz"] = safe_round(sums.get("nsentences", 0.0) / n, 1)
        out["num_updates"] = num_updates
        out["lr"] = lr
        out["gnorm"] = safe_round(float(self.gnorm) / n, 3)
        if clip_norm > 0:
            out["clip"] = safe_round(100.0 * float(self.clipped) / n, 1)
        if loss_scale is not None:
            out["loss_scale"] = safe_round(loss_scale, 4)
        out["train_wall"] = safe_round(self.train_wall, 0)
        out["wall"] = safe_round(wall, 0)
        return out


class ValidWindow:
    """Sums over one validation pass; wpb/bsz are per batch as in fairseq."""

    def __init__(self):
        self.sums: Dict = {}
        self.batches = 0
        self.start = time.perf_counter()

    def add(self, log: Dict) -> None:
        add_logs(self.sums, log)
        self.batches += 1

    def stats(self, reduce_metrics: Callable, num_updates: Optional[int]) -> "OrderedDict[str, object]":
        """num_updates=None leaves it out (fairseq-validate's line has none)."""
        sums = to_floats(self.sums)
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        n = max(self.batches, 1)
        ntokens = sums.get("ntokens", 0.0)
        out = criterion_stats(reduce_metrics, sums)
        out["wps"] = safe_round(ntokens / elapsed, 1)
        out["wpb"] = safe_round(ntokens / n, 1)
        out["bsz"] = safe_round(sums.get("nsentences", 0.0) / n, 1)
        if num_updates is not None:
            out["num_updates"] = num_updates
        return out


def prefixed(stats: Dict, prefix: str) -> "OrderedDict[str, object]":
    return OrderedDict((f"{prefix}_{k}", v) for k, v in stats.items())


def format_stats(stats: Dict) -> "OrderedDict[str, str]":
    return OrderedDict((k, format_stat(v)) for k, v in stats.items())


def sum_logs(logs: Iterable[Dict]) -> Dict:
    total: Dict = {}
    for log in logs:
        add_logs(total, log)
    return total


# ---- fairseq's meter classes (fairseq.logging.meters), used by fairseq.logging.metrics ----------------
class Meter:
    """A value that accumulates updates and reports one smoothed number (rounded to `round` digits
    when a meter has one, as fairseq's log lines show it)."""

    round: Optional[int] = None

    def _rounded(self, val):
        return safe_round(val, self.round) if self.round is not None and val is not None else val

    def state_dict(self) -> Dict:
        return {}

    def load_state_dict(self, state_dict: Dict) -> None:
        pass

    def reset(self) -> None:
        raise NotImplementedError

    @property
    def smoothed_value(self) -> float:
        raise NotImplementedError


class AverageMeter(Meter):
    """Weighted running average: update(val, n) adds val with weight n."""

    def __init__(self, round: Optional[int] = None):
        self.round = round
        self.reset()

    def reset(self) -> None:
        self.val = None  # the most recent update
        self.sum = 0
        self.count = 0

    def update(self, val, n=1) -> None:
        if val is not None:
            self.val = val
            if n > 0:
                self.sum = self.sum + val * n
                self.count = self.count + n

    def state_dict(self) -> Dict:
        return {"val": self.val, "sum": self.sum, "count": self.count, "round": self.round}

    def load_state_dict(self, state_dict: Dict) -> None:
        self.val, self.sum, self.count = state_dict["val"], state_dict["sum"], state_dict["count"]
        self.round = state_dict.get("round", None)

    @property
    def avg(self):
        return self.sum / self.count if self.count > 0 else self.val

    @property
    def smoothed_value(self) -> float:
        return self._rounded(self.avg)


class SumMeter(Meter):
    """Running sum."""

    def __init__(self, round: Optional[int] = None):
        self.round = round
        self.reset()

    def reset(self) -> None:
        self.sum = 0

    def update(self, val) -> None:
        if val is not None:
            self.sum = self.sum + val

    def state_dict(self) -> Dict:
        return {"sum": self.sum, "round": self.round}

    def load_state_dict(self, state_dict: Dict) -> None:
        self.sum = state_dict["sum"]
        self.round = state_dict.get("round", None)

    @property
    def smoothed_value(self) -> float:
        return self._rounded(self.sum)


class TimeMeter(Meter):
    """Events per second since the meter started (e.g. words per second)."""

    def __init__(self, init: int = 0, n: int = 0, round: Optional[int] = None):
        self.round = round
        self.reset(init, n)

    def reset(self, init: int = 0, n: int = 0) -> None:
        self.init = init
        self.start = time.perf_counter()
        self.n = n
        self.i = 0

    def update(self, val=1) -> None:
        self.n = self.n + val
        self.i += 1

    def state_dict(self) -> Dict:
        return {"init": self.elapsed_time, "n": self.n, "round": self.round}

    def load_state_dict(self, state_dict: Dict) -> None:
        self.reset(init=state_dict["init"], n=state_dict["n"])
        self.round = state_dict.get("round", None)

    @property
    def avg(self) -> float:
        return self.n / self.elapsed_time

    @property
    def elapsed_time(self) -> float:
        return self.init + (time.perf_counter() - self.start)

    @property
    def smoothed_value(self) -> float:
        return self._rounded(self.avg)


class StopwatchMeter(Meter):
    """Total (and average) seconds between start() and stop() calls."""

    def __init__(self, round: Optional[int] = None):
        self.round = round
        self.sum = 0
        self.n = 0
        self.start_time = None

    def start(self) -> None:
        self.start_time = time.perf_counter()

    def stop(self, n: int = 1, prehook: Optional[Callable] = None) -> None:
        if self.start_time is not None:
            if prehook is not None:
                prehook()
            self.sum = self.sum + (time.perf_counter() - self.start_time)
            self.n = self.n + n

    def reset(self) -> None:
        self.sum = 0
        self.n = 0
        self.start()

    def state_dict(self) -> Dict:
        return {"sum": self.sum, "n": self.n, "round": self.round}

    def load_state_dict(self, state_dict: Dict) -> None:
        self.sum, self.n = state_dict["sum"], state_dict["n"]
        self.start_time = None
        self.round = state_dict.get("round", None)

    @property
    def avg(self) -> float:
        return self.sum / self.n if self.n > 0 else self.sum

    @property
    def elapsed_time(self) -> float:
        return 0.0 if self.start_time is None else time.perf_counter() - self.start_time

    @property
    def smoothed_value(self) -> float:
        return self._rounded(self.avg if self.sum > 0 else self.elapsed_time)


class MetersDict(OrderedDict):
    """Meters by key, kept in (priority, insertion) order; derived meters are computed on read."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.priorities = []

    def add_meter(self, key, meter, priority) -> None:
        """Add `meter` under `key` (a key that exists keeps its meter)."""
        if key in self:
            return
        self.priorities.append((priority, len(self.priorities), key))
        self.priorities.sort()
        super().__setitem__(key, meter)
        for _, _, k in self.priorities:  # keep the dict itself in priority order
            self.move_to_end(k)

    def state_dict(self):
        return [(pri, key, self[key].__class__.__name__, self[key].state_dict())
                for pri, _, key in self.priorities
                if not isinstance(self[key], MetersDict._DerivedMeter)]  # derived meters are rebuilt by code

    def load_state_dict(self, state_dict):
        self.clear()
        self.priorities.clear()
        for pri, key, meter_cls, meter_state in state_dict:
            meter = globals()[meter_cls]()
            meter.load_state_dict(meter_state)
            self.add_meter(key, meter, pri)

    def get_smoothed_value(self, key: str) -> float:
        meter = self[key]
        if isinstance(meter, MetersDict._DerivedMeter):
            return meter.fn(self)
        return meter.smoothed_value

    def get_smoothed_values(self) -> "OrderedDict[str, float]":
        """Every meter's value, except keys starting with '_' (internal sums a derived meter reads)."""
        return OrderedDict((key, self.get_smoothed_value(key)) for key in self.keys() if not key.startswith("_"))

    def reset(self) -> None:
        for meter in self.values():
            if isinstance(meter, MetersDict._DerivedMeter):
                continue
            meter.reset()

    class _DerivedMeter(Meter):
        """A value computed from the other meters when read (fn(meters))."""

        def __init__(self, fn):
            self.fn = fn

        def reset(self) -> None:
            pass
