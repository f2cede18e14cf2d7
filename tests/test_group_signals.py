"""A signal to the whole process group, as clusters send it (docs/faults.md, "Stopping").

SLURM's preemption and scancel, docker stop, Kubernetes, `timeout` and a terminal's job control signal
every process of a job at once, DataLoader workers included (`kill -TERM -- -PGID`). The job must end
as if one process had been signalled: one agreed save of checkpoint_last.pt, exit 143 within seconds,
and a rerun resumes from it. Each test starts a real job in a new process group (gloo on 127.0.0.1,
with DataLoader workers) and signals the group.
"""
from __future__ import annotations

import os
import re
import signal
import time

import pytest

from test_faults import BOUND_S, Job, _launch, _train, _updates


def _group_stop(form, data, save_dir, workers, *extra):
    """Start a job of `form` with --num-workers `workers` in a new process group, SIGTERM the group after
    update 3; (jobs, exit statuses, the stop line, seconds from the signal to the end)."""
    jobs, ranks = _launch(form, data, save_dir, "--max-update", "100000", "--disable-validation",
                          "--num-workers", str(workers), *extra, group=True)
    t0 = time.monotonic()
    os.killpg(jobs[0].proc.pid, signal.SIGTERM)
    rcs = [j.wait() for j in jobs]
    elapsed = time.monotonic() - t0
    lines = [line for j in jobs for line in j.errors()]
    assert len(lines) == 1, [line for j in jobs for line in j.err][-30:]
    return jobs, rcs, lines[0], elapsed


def _check_stop(line: str, save_dir) -> int:
    m = re.fullmatch(r"fairseq-train: stopped by SIGTERM \(received by rank (\d)\) at update (\d+); saved (\S+); "
                     r"rerun the same command to resume", line)
    assert m, line
    assert m.group(3) == str(save_dir / "checkpoint_last.pt")
    assert _updates(save_dir / "checkpoint_last.pt") == int(m.group(2)) >= 3
    assert sorted(p.name for p in save_dir.iterdir()) == ["checkpoint_last.pt"]  # no temp file, lock released
    return int(m.group(2))


def test_sigterm_to_the_group_of_a_spawned_job_with_workers_saves_and_resumes(peer_dir, tmp_path):
    """2 ranks spawned, 2 DataLoader workers each: exit 143 within BOUND_S, a loadable checkpoint_last.pt,
    and the same command resumes from it."""
    jobs, rcs, line, elapsed = _group_stop("spawn", peer_dir / "data-bin", tmp_path, 2)
    assert rcs == [128 + signal.SIGTERM] and elapsed < BOUND_S
    saved = _check_stop(line, tmp_path)
    resumed = Job(_train(peer_dir / "data-bin", tmp_path, "--max-update", str(saved + 2), "--disable-validation",
                         "--num-workers", "2", "--distributed-world-size", "2"))
    assert resumed.wait(timeout=4 * BOUND_S) == 0, resumed.err[-20:]
    assert f"loaded checkpoint {tmp_path / 'checkpoint_last.pt'} (num_updates {saved})" in "\n".join(resumed.out)
    assert _updates(tmp_path / "checkpoint_last.pt") == saved + 2


@pytest.mark.parametrize("form,workers", [("single", 1), ("no-spawn", 2)])
def test_sigterm_to_the_group_ends_like_sigterm_to_one_process(peer_dir, tmp_path, form, workers):
    """One process, or two ranks started one per command (fairseq's multi-node form, SLURM's tasks) in
    one group: each rank exits 143 after one agreed save."""
    jobs, rcs, line, elapsed = _group_stop(form, peer_dir / "data-bin", tmp_path, workers)
    assert rcs == [128 + signal.SIGTERM] * len(jobs) and elapsed < BOUND_S
    _check_stop(line, tmp_path)


def test_sigterm_to_torchruns_group_saves_once(peer_dir, tmp_path):
    """torchrun forwards the signal to its ranks, which save together and exit 143; torchrun itself then
    reports torch's SignalException and exits 1 (torch's launcher, not ours)."""
    jobs, rcs, line, elapsed = _group_stop("torchrun", peer_dir / "data-bin", tmp_path, 1)
    assert rcs == [1] and elapsed < BOUND_S
    _check_stop(line, tmp_path)


def test_loader_workers_ignore_a_group_signal_and_end_with_their_parent(tmp_path):
    """The mechanism alone: a loader's workers outlive a SIGTERM to the group that their parent handles,
    serve every batch after it, and end once their parent does."""
    script = r"""
import os, signal, sys, time, torch
from fairseq.data import iterators
got = []
signal.signal(signal.SIGTERM, lambda s, f: got.append(s))
class Slow(torch.utils.data.Dataset):
    def __len__(self): return 40
    def __getitem__(self, i):
        time.sleep(0.02)
        return i
loader = iterators._Loader(Slow(), batch_size=4, num_workers=2)
seen = []
for batch in loader:
    seen.extend(batch.tolist())
    if len(seen) == 8:
        print("workers", *[p.pid for p in torch.multiprocessing.active_children()], flush=True)
        while not got:
            time.sleep(0.01)
print("done", len(seen), got, flush=True)
"""
    job = Job(["-c", script], start_new_session=True)
    first = job.wait_for(r"^workers( \d+)+$", timeout=BOUND_S)
    workers = [int(p) for p in first.group(0).split()[1:]]
    os.killpg(job.proc.pid, signal.SIGTERM)
    assert job.wait() == 0, job.err[-20:]
    assert job.out[-1] == f"done 40 [{int(signal.SIGTERM)}]"
    assert not [line for line in job.err if "killed by signal" in line]
    for pid in workers:  # reaped by their parent at its exit
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split(")")[1].split()[0] == "Z"
