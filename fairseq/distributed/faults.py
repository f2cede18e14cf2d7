"""How a multi-process job ends when something goes wrong: stop requests, dead peers, timeouts.

Three rules (docs/faults.md tells users what they mean for them):

- A stop request (SIGTERM/SIGINT) seen by ANY rank is agreed on by all of them at the same point:
  :func:`agree_on_stop` all-reduces each rank's pending signal once per update (and once per
  validation batch), so every rank learns of it at the same step, saves once and exits. Without
  it the signalled rank would enter the save's barrier while the others wait in the next
  gradient all-reduce, and both would hang.
- A peer that dies or stops answering ends the job within a bounded time: every collective waits
  at most :func:`heartbeat_timeout` seconds (``--heartbeat-timeout``), and a survivor names the
  ranks that are gone (:func:`missing_ranks`, a roll call through the rendezvous store).
- A spawned job (``--distributed-world-size N``) is supervised by its parent
  (:func:`supervise`): it forwards SIGTERM/SIGINT to the workers, names a worker that died, and
  ends the rest after a short grace period.

Which signals stop a job (:func:`stop_signals`): SIGTERM always; SIGINT unless the process was started
with SIGINT ignored. A shell starts a background job (``cmd &`` in a script, ``nohup``, many batch
runners) that way so that Ctrl-C at the terminal reaches only the foreground; such a job keeps ignoring
it, as every Unix tool and Python itself do, and is stopped with SIGTERM (``kill``, ``scancel``).

This module talks to torch.distributed directly (not through fairseq.distributed.utils, which
uses it to start the process group and the workers).
"""
from __future__ import annotations

import datetime
import os
import pickle
import signal
import sys
import threading
import time
from typing import List, Optional, Tuple

import torch
import torch.distributed as dist

# fairseq's --heartbeat-timeout default is -1 ("disabled", which leaves torch's 30-minute process-group
# timeout). Ours: -1 means 10 minutes, longer than any wait a healthy job has (rank 0 writing a large
# checkpoint while the others wait in the barrier), short enough that a hung job is noticed.
DEFAULT_HEARTBEAT_TIMEOUT_S = 600
GRACE_S = 15  # after one spawned worker ends badly, how long the others get to end on their own
_ROLL_CALL_S = 5  # how long a survivor waits for the other survivors to answer a roll call
_STORE_GRACE_S = 3  # and how much longer for a store that does not answer at all


def heartbeat_timeout(args) -> int:
    """Seconds a collective may wait for a peer: --heartbeat-timeout if > 0, else our default."""
    value = int(getattr(args, "heartbeat_timeout", -1) or -1)
    return value if value > 0 else DEFAULT_HEARTBEAT_TIMEOUT_S


def process_group_timeout(args) -> datetime.timedelta:
    return datetime.timedelta(seconds=heartbeat_timeout(args))


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


# ----------------------------------------------------------------------------- stop requests


def stop_signals() -> Tuple[int, ...]:
    """The signals that ask this process to save and stop: SIGTERM, and SIGINT unless it is ignored here
    (inherited from a shell that started the job in the background; see the module docstring)."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        return (signal.SIGTERM,)
    return (signal.SIGTERM, signal.SIGINT)


def agree_on_stop(local_signum: Optional[int]) -> Optional[Tuple[int, int]]:
    """(signal, rank that saw it) if any rank has a pending stop request, else None; same on every rank.

    A collective when more than one process trains (every rank must call it at the same point); one
    small all-reduce of one int per rank.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return (int(local_signum), 0) if local_signum is not None else None
    world, rank = dist.get_world_size(), dist.get_rank()
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    seen = torch.zeros(world, dtype=torch.int64, device=device)
    seen[rank] = int(local_signum or 0)
    dist.all_reduce(seen, op=dist.ReduceOp.SUM)
    for r, signum in enumerate(seen.tolist()):
        if signum:
            return int(signum), r
    return None


# ----------------------------------------------------------------------------- dead peers


def is_comm_failure(error: BaseException) -> bool:
    """Whether `error` came from a collective whose peer died or timed out (gloo raises plain
    RuntimeErrors whose text names its transport; NCCL raises DistBackendError)."""
    if isinstance(error, getattr(dist, "DistError", ())):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("/gloo/" in text or "Connection closed by peer" in text
                                                or "Connection reset by peer" in text)


def missing_ranks() -> List[int]:
    """The ranks that do not answer a roll call through the rendezvous store (after a failed collective).

    Every survivor checks in and waits a few seconds for the others. The store's host (rank 0 under
    tcp:// rendezvous) may itself be gone or hung: a store that refuses us means it is gone, and one
    that does not answer within the roll call's time (a stopped process still accepts connections, and
    a store read waits on it whatever the store's timeout says) means it hangs; then rank 0 is named.
    """
    world, rank = dist.get_world_size(), dist.get_rank()
    answer: List[List[int]] = []
    caller = threading.Thread(target=lambda: answer.append(_roll_call(world, rank)), daemon=True,
                              name="fairseq-roll-call")
    caller.start()
    caller.join(_ROLL_CALL_S + _STORE_GRACE_S)
    if answer:
        return answer[0]
    return [0] if rank != 0 else []


def _roll_call(world: int, rank: int) -> List[int]:
    try:
        store = dist.distributed_c10d._get_default_store()
        store.set_timeout(datetime.timedelta(seconds=_ROLL_CALL_S))
        store.set(f"fairseq_roll_call/{rank}", str(os.getpid()))
        deadline = time.monotonic() + _ROLL_CALL_S
        missing = [r for r in range(world) if r != rank]
        while missing and time.monotonic() < deadline:
            missing = [r for r in missing if not store.check([f"fairseq_roll_call/{r}"])]
            if missing:
                time.sleep(0.2)
        return missing
    except RuntimeError:  # DistStoreError and friends: the store's host is gone
        return [0] if rank != 0 else []


def lost_peer_message(error: BaseException, timeout_s: int, saved: str) -> str:
    """One line: which ranks are gone and why this rank stopped (a collective failed); `saved` says
    what the save dir holds (checkpoint.save_dir.last_save_note)."""
    first = (str(error).splitlines() or [""])[0]
    timed_out = "timed out" in first.lower() or "timeout" in first.lower()
    cause = f"no answer within --heartbeat-timeout {timeout_s} s" if timed_out else "connection closed"
    missing = missing_ranks()
    if not missing:
        who = "a peer rank is gone"
    elif len(missing) == 1:
        who = f"rank {missing[0]} is gone"
    else:
        who = f"ranks {', '.join(map(str, missing))} are gone"
    return f"rank {dist.get_rank()}: {who} ({cause}); stopping without saving, {saved}"


# ----------------------------------------------------------------------------- spawned workers


def supervise(context, first_rank: int = 0) -> Optional[Tuple[int, int, int]]:
    """Wait for the workers of a torch.multiprocessing context; (index, pid, exit status) of the first
    worker that failed, or None when all succeeded.

    The stop signals (stop_signals) sent to this (parent) process are forwarded to every worker, which then stop
    together (agree_on_stop). When a worker ends badly, the others get GRACE_S seconds to end on
    their own (a peer's death fails their next collective), then are terminated, then killed. A
    worker that is stopped (SIGSTOP) cannot end on its own and is killed at once. A
    worker killed by a signal (kill -9, the OOM killer) is named in one line, since it could not say
    anything itself; its status is reported as 128 + the signal, as a shell does. An uncaught
    exception's traceback (which torch's worker wrapper hands to the parent) is printed.
    """
    procs = context.processes

    def forward(signum, frame):
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signum)

    previous = {s: signal.signal(s, forward) for s in stop_signals()}
    try:
        first_bad: Optional[int] = None
        failed_at = None
        while any(p.is_alive() for p in procs):
            for i, p in enumerate(procs):
                if first_bad is None and p.exitcode not in (None, 0):
                    first_bad, failed_at = i, time.monotonic()
            alive = [p for p in procs if p.is_alive()]
            if failed_at is not None and (time.monotonic() - failed_at > GRACE_S
                                          or all(_stopped(p.pid) for p in alive)):
                _end(procs)
                break
            time.sleep(0.1)
        for p in procs:
            p.join()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    if first_bad is None:
        first_bad = next((i for i, p in enumerate(procs) if p.exitcode != 0), None)
    if first_bad is None:
        return None
    proc = procs[first_bad]
    code = proc.exitcode
    if code < 0:
        print(f"fairseq-train: error: rank {first_rank + first_bad} (pid {proc.pid}) was killed by "
              f"{signal_name(-code)}; the job stopped", file=sys.stderr, flush=True)
        return first_bad, proc.pid, 128 - code
    error_file = context.error_files[first_bad]
    if os.path.isfile(error_file) and os.path.getsize(error_file):
        with open(error_file, "rb") as f:
            print(pickle.load(f), file=sys.stderr, flush=True)
    return first_bad, proc.pid, code


def _end(procs) -> None:
    """Terminate, then after GRACE_S kill, the workers still running; a stopped worker (SIGSTOP, a
    debugger) cannot act on SIGTERM, so it is killed at once."""
    for p in procs:
        if p.is_alive():
            if _stopped(p.pid):
                p.kill()
            else:
                p.terminate()
    deadline = time.monotonic() + GRACE_S
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.kill()


def _stopped(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("T", "t")
    except (OSError, IndexError):
        return False
