"""The save dir's lock and its temp-file cleanup, raced by real processes (docs/faults.md).

The lock is an flock (fairseq/file_lock.py): exactly one of several simultaneous starters owns it,
whatever their pid namespace; a holder that dies (kill -9) holds nothing. The contenders are small
interpreters that only take the lock, loading fairseq/file_lock.py by path (stdlib only): forked from
one such interpreter (so 100 rounds of 4 take a second or two), or exec'd one by one, also in another
pid namespace through `unshare --pid --fork`. The real fairseq-train variant is
test_save_dir.test_four_trainers_started_together_one_trains.
"""
from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fairseq import atomic_files
from fairseq.checkpoint import save_dir
from fairseq.checkpoint.save_dir import LOCK_NAME, SaveDirError

REPO = Path(__file__).resolve().parents[1]
# A process that takes the lock of argv[2] once the file argv[3] exists, says whether it got it, and holds
# it until its stdin closes.
TAKER = r"""
import importlib.util, os, sys, time
spec = importlib.util.spec_from_file_location("file_lock", sys.argv[1])
lock = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lock)
while not os.path.exists(sys.argv[3]):
    time.sleep(0.001)
try:
    lock.acquire(sys.argv[2])
    print("owner", os.getpid(), flush=True)
except lock.Busy as e:
    print("refused", e.owner, flush=True)
sys.stdin.read()
"""


# 100 rounds of 4 forked processes taking the lock of a directory at the same moment (even rounds on a
# fresh directory, odd ones on the lock file the previous owner left: it exited without releasing, as
# kill -9 would); prints how many owned it in each round. Forked from this small interpreter, a round
# costs milliseconds.
RACER = r"""
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("file_lock", sys.argv[1])
lock = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lock)

def race(path, n=4):
    go_r, go_w = os.pipe(); res_r, res_w = os.pipe(); end_r, end_w = os.pipe()
    pids = []
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            for fd in (go_w, res_r, end_w):
                os.close(fd)
            os.read(go_r, 1)
            try:
                lock.acquire(path)
                os.write(res_w, b"1")
            except lock.Busy:
                os.write(res_w, b"0")
            os.read(end_r, 1)  # EOF once the round is over: exit holding what we got
            os._exit(0)
        pids.append(pid)
    for fd in (go_r, res_w, end_r):
        os.close(fd)
    os.write(go_w, b"x" * n)
    answers = b""
    while len(answers) < n:
        answers += os.read(res_r, n)
    os.close(end_w)
    for pid in pids:
        os.waitpid(pid, 0)
    os.close(go_w); os.close(res_r)
    return answers.count(b"1")

owners = []
for r in range(100):
    d = os.path.join(sys.argv[2], f"round{r - r % 2}")
    os.makedirs(d, exist_ok=True)
    owners.append(race(os.path.join(d, sys.argv[3])))
print(owners)
"""


def _fork(fn) -> int:
    """Run fn() in a forked child (which then exits at once, whatever happens); its pid."""
    pid = os.fork()
    if pid == 0:
        try:
            fn()
        finally:
            os._exit(0)
    return pid


def test_exactly_one_owner_in_100_rounds_of_4_simultaneous_starts(tmp_path):
    out = subprocess.run([sys.executable, "-c", RACER, str(REPO / "fairseq" / "file_lock.py"), str(tmp_path),
                          LOCK_NAME], capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.strip() == str([1] * 100)


def _taker(lock: Path, go: Path, *prefix: str) -> subprocess.Popen:
    return subprocess.Popen([*prefix, sys.executable, "-c", TAKER, str(REPO / "fairseq" / "file_lock.py"), str(lock),
                             str(go)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _answers(takers):
    lines = [t.stdout.readline().split() for t in takers]
    for t in takers:
        t.stdin.close()
        assert t.wait(timeout=30) == 0
    return lines


def test_exactly_one_owner_among_separate_interpreters(tmp_path):
    """The same race between exec'd interpreters (nothing shared but the file system), 5 rounds."""
    for r in range(5):
        go = tmp_path / f"go{r}"
        takers = [_taker(tmp_path / LOCK_NAME, go) for _ in range(4)]
        time.sleep(0.3)  # all four are waiting for the go file
        go.touch()
        assert sorted(a[0] for a in _answers(takers)) == ["owner", "refused", "refused", "refused"]


def _unshare_pid() -> list:
    prefix = ["unshare", "--pid", "--fork", "--kill-child"]
    try:
        ok = subprocess.run([*prefix, "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    if not ok:
        pytest.skip("cannot create a pid namespace here (unshare --pid --fork needs root or user namespaces)")
    return prefix


def test_a_live_lock_holds_across_pid_namespaces(tmp_path):
    """A second container on the same volume: pids mean nothing across namespaces, the kernel's lock does."""
    prefix = _unshare_pid()
    go = tmp_path / "go"
    go.touch()
    for holder_prefix, contender_prefix in (([], prefix), (prefix, [])):
        holder = _taker(tmp_path / LOCK_NAME, go, *holder_prefix)
        assert holder.stdout.readline().split()[0] == "owner"
        contender = _taker(tmp_path / LOCK_NAME, go, *contender_prefix)
        answer = contender.stdout.readline()
        assert answer.startswith("refused pid "), answer
        for t in (contender, holder):
            t.stdin.close()
            assert t.wait(timeout=30) == 0


def test_a_killed_holder_holds_nothing_and_pids_decide_nothing(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger=save_dir.__name__)
    holder = _taker(tmp_path / LOCK_NAME, tmp_path)  # tmp_path exists: no waiting
    pid = int(holder.stdout.readline().split()[1])
    with pytest.raises(SaveDirError, match=rf"in use by another fairseq-train \(pid {pid} on host "):
        save_dir.acquire_lock(str(tmp_path))
    holder.kill()
    holder.wait()
    assert save_dir.acquire_lock(str(tmp_path)) == str(tmp_path / LOCK_NAME)  # at once: no staleness rule
    try:
        assert f"left by pid {pid} on host" in caplog.text
    finally:
        save_dir.release(str(tmp_path))
    assert not (tmp_path / LOCK_NAME).exists()
    # a record naming a live, unrelated process (pid reuse) is only a record
    (tmp_path / LOCK_NAME).write_text(f"pid 1 on host {os.uname().nodename}, started 2026-01-01 00:00:00\n")
    save_dir.acquire_lock(str(tmp_path))
    save_dir.release(str(tmp_path))


def test_lock_path_that_is_a_directory_is_one_line(tmp_path):
    (tmp_path / LOCK_NAME).mkdir()
    assert save_dir.prepare(str(tmp_path)) == (f"--save-dir {tmp_path}: its lock file {tmp_path / LOCK_NAME} is a "
                                               "directory; remove it")


def test_temp_file_of_a_live_writer_is_kept_until_it_dies(tmp_path, caplog):
    """Proof that a writer is gone is its lock, not its pid: kept while it lives, removed once it is killed."""
    ready_r, ready_w = os.pipe()

    def writer():
        os.close(ready_r)
        fd, path = atomic_files.temp_file(str(tmp_path), "checkpoint_last.pt")
        os.write(fd, b"\0" * 1000)
        os.write(ready_w, path.encode())
        time.sleep(600)

    pid = _fork(writer)
    os.close(ready_w)
    temp = Path(os.read(ready_r, 4096).decode())
    os.close(ready_r)
    try:
        assert re.fullmatch(rf"\.tmp-{pid}-checkpoint_last\.pt-[a-z0-9_]{{8}}", temp.name)
        assert save_dir.remove_stale_temp_files(str(tmp_path)) == 0
        assert temp.exists() and temp.name not in caplog.text
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert save_dir.remove_stale_temp_files(str(tmp_path)) == 1
    assert not temp.exists() and f"removed {temp} (1,000 bytes), left by a save that never finished" in caplog.text
