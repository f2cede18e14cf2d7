"""--lr-scheduler manual: the lr read from tables, --epoch2lr (set as each epoch begins) and --update2lr
(set after every update; it wins where both apply).

A table is a Python dict literal whose keys are epochs/updates, a range 'A-B' (inclusive) or a list
'A,B,C': --update2lr "{'0': 1e-4, '1-99': 5e-4, '100': 1e-4}". Each epoch or update takes the value of
the largest key at or below it; before the first key the lr stays as it is (fairseq logs a warning at
every such update, here once). Bad tables stop the run at parse time with the flag named.
"""
from __future__ import annotations

import ast
import logging
from typing import Dict

from fairseq.optim.lr_scheduler.fairseq_lr_scheduler import LegacyFairseqLRScheduler
from fairseq.optim.lr_scheduler.registry import register_lr_scheduler

logger = logging.getLogger(__name__)


def parse_lr_table(text: str, flag: str) -> Dict[int, float]:
    """'{"1-3": 0.1, "5,7": 0.2}' -> {1: 0.1, 2: 0.1, 3: 0.1, 5: 0.2, 7: 0.2}."""
    try:
        table = ast.literal_eval(str(text).replace(" ", ""))
        if not isinstance(table, dict):
            raise ValueError
        out = {}
        for key, value in table.items():
            key = str(key)
            if "," in key:
                steps = [int(k) for k in key.split(",")]
            elif "-" in key:
                first, last = (int(k) for k in key.split("-"))
                steps = list(range(first, last + 1))
            else:
                steps = [int(key)]
            for k in steps:
                out[k] = float(value)
        return out
    except (ValueError, SyntaxError, TypeError):
        raise ValueError(f"{flag} {text}: expected a dict of epoch/update (or 'A-B', 'A,B') to lr, like "
                         "\"{'1': 1e-4, '2-10': 5e-4}\"") from None


def _at(table: Dict[int, float], n: int):
    keys = [k for k in table if k <= n]
    return table[max(keys)] if keys else None


@register_lr_scheduler("manual")
class ManualSchedule(LegacyFairseqLRScheduler):
    @staticmethod
    def add_args(parser):
        g = parser.add_argument_group("lr_scheduler")
        g.add_argument("--epoch2lr", type=str, metavar="DICT", default="{}", help="the lr of each epoch")
        g.add_argument("--update2lr", type=str, metavar="DICT", default="{}", help="the lr after each update")

    def __init__(self, args, optimizer):
        super().__init__(args, optimizer)
        self.epoch2lr = parse_lr_table(args.epoch2lr, "--epoch2lr")
        self.update2lr = parse_lr_table(args.update2lr, "--update2lr")
        if 1 in self.epoch2lr:
            self.lr = self.epoch2lr[1]
        elif 1 in self.update2lr:
            self.lr = self.update2lr[1]
        else:
            self.lr = float(args.lr[0]) if isinstance(args.lr, (list, tuple)) else float(args.lr)
        optimizer.set_lr(self.lr)
        self._warned = False

    def state_dict(self) -> dict:
        return {"lr": self.lr}

    def load_state_dict(self, state: dict) -> None:
        if "lr" in state:
            self.lr = state["lr"]

    def _missing(self, what: str, n: int, table: str) -> None:
        if not self._warned:
            self._warned = True
            logger.warning(f"{table} has no key at or below {what} {n}: the lr stays {self.optimizer.get_lr()} "
                           "(said once)")

    def step_begin_epoch(self, epoch: int):
        lr = _at(self.epoch2lr, epoch)
        if lr is None:
            self._missing("epoch", epoch, "--epoch2lr")
            lr = self.optimizer.get_lr()
        self.lr = lr
        self.optimizer.set_lr(self.lr)
        return self.optimizer.get_lr()

    def step_update(self, num_updates: int) -> float:
        lr = _at(self.update2lr, num_updates)
        if lr is None:
            self._missing("update", num_updates, "--update2lr")
            lr = self.optimizer.get_lr()
        self.optimizer.set_lr(lr)
        return self.optimizer.get_lr()
