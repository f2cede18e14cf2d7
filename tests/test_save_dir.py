"""--save-dir checked before the work, with real processes and real file systems (docs/faults.md).

A read-only and a full file system are small tmpfs mounts (the tests run as root; they skip, saying
so, where mounting is not permitted). Each asserts one line naming the path and the cause, a
non-zero exit before (or instead of) training, and that checkpoint_last.pt is never lost.
"""
from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fairseq.checkpoint.save_dir import LOCK_NAME
from test_faults import FLAGS, Job, _env, _updates

REPO = Path(__file__).resolve().parents[1]
BOUND_S = 120


def _argv(data, save_dir, *extra):
    return ["-m", "fairseq_cli.train", str(data), *FLAGS, "--save-dir", str(save_dir), "--disable-validation",
            *extra]


def _run(data, save_dir, *extra):
    p = subprocess.run([sys.executable, *_argv(data, save_dir, *extra)], env=_env(), cwd=REPO, text=True,
                       capture_output=True, timeout=BOUND_S)
    return p.returncode, p.stdout, [line for line in p.stderr.splitlines() if line.startswith("fairseq-train:")]


@pytest.fixture
def tmpfs(tmp_path):
    """mount(size, ro=False) -> a fresh tmpfs under tmp_path; unmounted afterwards."""
    mounted = []

    def mount(size: str, ro: bool = False) -> Path:
        where = tmp_path / f"fs{len(mounted)}"
        where.mkdir()
        opts = f"size={size}" + (",ro" if ro else "")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}); these tests need root and mount(8)")
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_read_only_save_dir_is_refused_before_training(peer_dir, tmpfs):
    ro = tmpfs("1m", ro=True)
    rc, out, errors = _run(peer_dir / "data-bin", ro / "ckpt", "--max-update", "2")
    assert rc == 1
    assert errors == [f"fairseq-train: error: --save-dir {ro / 'ckpt'}: cannot write there "
                      f"(Read-only file system: {ro / 'ckpt'})"]
    assert "begin training" not in out


def test_save_dir_that_is_a_file_is_refused(peer_dir, tmp_path):
    path = tmp_path / "not-a-dir"
    path.write_text("x")
    rc, out, errors = _run(peer_dir / "data-bin", path, "--max-update", "2")
    assert (rc, errors) == (1, [f"fairseq-train: error: --save-dir {path}: is a file, not a directory"])
    assert "begin training" not in out


def test_full_disk_fails_in_one_line_and_the_rerun_resumes(peer_dir, tmpfs):
    """A 3 MB disk holds checkpoint_last.pt (1.7 MB) but not its copy checkpoint_1_2.pt."""
    fs = tmpfs("3m")
    save = fs / "ckpt"
    rc, out, errors = _run(peer_dir / "data-bin", save, "--max-update", "4", "--save-interval-updates", "2")
    assert rc == 1
    assert errors == [f"fairseq-train: error: could not save checkpoint {save / 'checkpoint_1_2.pt'}: "
                      "No space left on device; checkpoint_last.pt (update 2) is complete"]
    assert _updates(save / "checkpoint_last.pt") == 2
    assert sorted(p.name for p in save.iterdir()) == ["checkpoint_last.pt"]  # no temp file, no lock
    subprocess.run(["mount", "-o", "remount,size=16m", str(fs)], check=True)
    rc, out, errors = _run(peer_dir / "data-bin", save, "--max-update", "4", "--save-interval-updates", "2")
    assert (rc, errors) == (0, [])
    assert f"loaded checkpoint {save / 'checkpoint_last.pt'} (num_updates 2)" in out  # resumed, not restarted
    assert _updates(save / "checkpoint_last.pt") == 4


def test_only_our_abandoned_temp_files_are_removed(peer_dir, tmp_path):
    """A save killed mid-write leaves `.tmp-<pid>-checkpoint_last.pt-<8>`, whose lock no one holds: removed
    and named. Files that merely look alike are the user's: left, and never named."""
    ours = tmp_path / ".tmp-4242-checkpoint_last.pt-abc12345"
    ours.write_bytes(b"\0" * 100_000)
    foreign = [".tmp-notes.txt", ".tmp-99999999-otherapp.dat", ".tmp-1-my-notes123", ".tmp-checkpoint_1_2.pt-xyz",
               ".tmp-77-checkpoint_last.pt-abc1234"]  # the last: 7 random characters, not mkstemp's 8
    for name in foreign:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / LOCK_NAME).write_text("pid 4242 on host elsewhere, started 2026-01-01 00:00:00\n")  # died with -9
    rc, out, errors = _run(peer_dir / "data-bin", tmp_path, "--max-update", "1")
    assert (rc, errors) == (0, [])
    assert f"removed {ours} (100,000 bytes), left by a save that never finished" in out
    assert f"took the lock {tmp_path / LOCK_NAME} left by pid 4242 on host elsewhere" in out
    assert not any(name in out for name in foreign)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["checkpoint_last.pt", *foreign])


def test_four_trainers_started_together_one_trains(peer_dir, tmp_path):
    """The real-process variant of test_save_dir_lock's races: four fairseq-train on one --save-dir."""
    jobs = [Job(_argv(peer_dir / "data-bin", tmp_path, "--max-update", "100000")) for _ in range(4)]
    try:
        deadline = time.monotonic() + BOUND_S
        while time.monotonic() < deadline and sum(j.proc.poll() is not None for j in jobs) < 3:
            time.sleep(0.2)
        refused = [j for j in jobs if j.proc.poll() is not None]
        (owner,) = [j for j in jobs if j.proc.poll() is None]
        owner.wait_for(r'"num_updates": "1"')
        record = (tmp_path / LOCK_NAME).read_text().strip()
        assert re.fullmatch(rf"pid {owner.proc.pid} on host \S+, started \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d", record)
        for j in refused:
            assert j.wait() == 1
            assert j.errors() == [f"fairseq-train: error: --save-dir {tmp_path} is in use by another fairseq-train "
                                  f"({record}; lock file {tmp_path / LOCK_NAME}); stop it or choose another "
                                  "--save-dir"]
            assert not any("begin training" in line for line in j.out + j.err)
    finally:
        for j in jobs:
            j.kill()


def test_disk_too_small_for_checkpoint_last_names_it(peer_dir, tmpfs):
    """torch.save reports a full disk as an opaque RuntimeError; the line names the OSError instead."""
    save = tmpfs("1m") / "ckpt"
    rc, out, errors = _run(peer_dir / "data-bin", save, "--max-update", "2")
    assert rc == 1
    assert errors == [f"fairseq-train: error: could not save checkpoint {save / 'checkpoint_last.pt'}: "
                      "No space left on device; the previous checkpoints are unchanged"]
    assert list(save.iterdir()) == []  # no temp file, no lock
