"""Progress lines for logs that are not a terminal: the first update, then an ETA to --max-update.

Why: with --log-format simple/json (or any non-TTY, e.g. `| tee`), fairseq prints nothing until
--log-interval updates have run; on CPU with a full-size model that is hours of silence. This adds
one plain `fairseq_cli.train` line after the process's first update and one after each train_inner
record: updates done, the recent seconds per update (wall time between the lines, validation and
checkpointing included, since they are part of the wait) and, when --max-update is set, the time
left at that rate. The first line gives no ETA: the first update carries the process's one-off
warm-up (seen: 6 s against a 0.35 s median step, an ETA of hours for a minutes-long run), so the
first rate is measured from it to the next line. The train_inner json records themselves are
untouched (fairseq's format).
"""
from __future__ import annotations

import datetime
import time
from typing import Optional


def _duration(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(seconds)))


class UpdateEta:
    """Remembers when the previous line was written; `line(n)` describes the updates since then."""

    def __init__(self, max_update: int, start_updates: int, clock=time.perf_counter):
        self.max_update = int(max_update or 0)
        self.clock = clock
        self.last_time = clock()
        self.last_updates = int(start_updates)
        self.first_done = False

    def due(self, num_updates: int, log_interval: int) -> bool:
        """After the first update of this process, and wherever a train_inner record is written."""
        return not self.first_done or (log_interval > 0 and num_updates % log_interval == 0)

    def line(self, num_updates: int) -> str:
        now = self.clock()
        done = num_updates - self.last_updates
        per_update = (now - self.last_time) / max(1, done)
        if not self.first_done:
            text = f"progress: first update done (update {num_updates}) in {now - self.last_time:.1f} s (warm-up included)"
        else:
            text = f"progress: update {num_updates}, {per_update:.2f} s/update over the last {done}"
        if self.max_update > 0:
            left = max(0, self.max_update - num_updates)
            eta = f"ETA {_duration(left * per_update)} at that rate" if self.first_done else "ETA on the next line"
            text += f"; {left} of --max-update {self.max_update} left, {eta}"
        self.first_done, self.last_time, self.last_updates = True, now, num_updates
        return text
