"""Faults of a training job, driven with real processes (docs/faults.md).

Signals go to real ranks of real 2-rank jobs (gloo on 127.0.0.1): the spawned form
(``--distributed-world-size 2``) and fairseq's multi-node form (one process per rank,
``--distributed-no-spawn``). Each test asserts one line naming the cause, a bounded time, a
non-zero exit and a checkpoint_last.pt that loads.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fairseq.checkpoint.files import load_checkpoint_file
from fairseq.distributed import utils as D
from test_launch import _env  # the environment the launch tests give a job's processes

REPO = Path(__file__).resolve().parents[1]
BOUND_S = 60  # every job below must end within this long after the fault
START_S = 120  # start-up (spawn + import + data) on a busy 2-core machine
FLAGS = [
    "--task", "masked_lm", "--arch", "roberta_base", "--encoder-layers", "2", "--encoder-embed-dim", "16",
    "--encoder-ffn-embed-dim", "32", "--encoder-attention-heads", "2", "--tokens-per-sample", "32",
    "--sample-break-mode", "complete", "--batch-size", "4", "--optimizer", "adam", "--lr", "1e-4",
    "--cpu", "--log-format", "json", "--log-interval", "1", "--seed", "3", "--num-workers", "0",
    "--no-epoch-checkpoints",
]


class Job:
    """One real process, its stdout/stderr collected by threads (so a full pipe never blocks it)."""

    def __init__(self, argv, env=None, **popen):
        self.proc = subprocess.Popen([sys.executable, *argv], env=env or _env(), cwd=REPO, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)
        self.out, self.err = [], []
        self._threads = [threading.Thread(target=self._read, args=(s, buf), daemon=True)
                         for s, buf in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for t in self._threads:
            t.start()

    @staticmethod
    def _read(stream, buf):
        for line in stream:
            buf.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = START_S) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.out) + list(self.err):
                m = re.search(pattern, line)
                if m:
                    return m
            if self.proc.poll() is not None:
                time.sleep(0.5)
                break
            time.sleep(0.1)
        self.kill()
        raise AssertionError(f"no line matching {pattern!r}\n" + "\n".join((self.out + self.err)[-40:]))

    def wait(self, timeout: float = BOUND_S) -> int:
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"still running after {timeout} s\n" + "\n".join((self.out + self.err)[-40:]))
        for t in self._threads:
            t.join(5)
        return rc

    def kill(self):
        for pid in _workers(self.proc.pid):
            _signal(pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def errors(self):
        """The lines of stderr that are fairseq's own one-line messages."""
        return [line for line in self.err if line.startswith("fairseq-train:")]


def _signal(pid: int, sig) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _workers(parent: int):
    """The spawned training workers of `parent`, in rank order (start order; not the resource tracker)."""
    try:
        children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    except OSError:
        return []
    found = []
    for pid in map(int, children):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            started = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        except OSError:
            continue
        if "spawn_main" in cmd:
            found.append((started, pid))
    return [pid for _, pid in sorted(found)]


def _train(data, save_dir, *extra):
    return ["-m", "fairseq_cli.train", str(data), *FLAGS, "--save-dir", str(save_dir), *extra]


def _no_spawn(data, save_dir, *extra, group: bool = False):
    """fairseq's multi-node form on one machine: one command per rank (with group: both in a new process
    group, as one job's tasks are)."""
    url = f"tcp://127.0.0.1:{D.free_port()}"
    jobs = []
    for r in (0, 1):
        popen = {} if not group else {"process_group": jobs[0].proc.pid if r else 0}
        jobs.append(Job(_train(data, save_dir, "--distributed-init-method", url, "--distributed-world-size", "2",
                               "--distributed-no-spawn", "--distributed-rank", str(r), *extra), **popen))
    return jobs


def _updates(path: Path) -> int:
    state = load_checkpoint_file(str(path))
    return state["optimizer_history"][-1]["num_updates"]


# ---------------------------------------------------------------- 1. stopping a distributed job


def _launch(form: str, data, save_dir, *extra, group: bool = False):
    """A job in one of fairseq's launch forms (2 ranks, or one process for "single"), in a new process
    group if `group`: (jobs, rank pids [rank 0, rank 1])."""
    if form == "no-spawn":
        jobs = _no_spawn(data, save_dir, *extra, group=group)
        jobs[0].wait_for(r'"num_updates": "3"')
        return jobs, [j.proc.pid for j in jobs]
    popen = {"process_group": 0} if group else {}
    if form == "single":
        job = Job(_train(data, save_dir, *extra), **popen)
    elif form == "spawn":
        job = Job(_train(data, save_dir, "--distributed-world-size", "2", *extra), **popen)
    else:  # torchrun: its workers are its direct children, started in rank order
        job = Job(["-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2", "--master_addr",
                   "127.0.0.1", "--master_port", str(D.free_port()), *_train(data, save_dir, *extra)], **popen)
    job.wait_for(r'"num_updates": "3"')
    if form == "single":
        return [job], [job.proc.pid]
    ranks = _workers(job.proc.pid) if form == "spawn" else _children(job.proc.pid)
    assert len(ranks) == 2, ranks
    return [job], ranks


def _children(parent: int):
    return sorted(int(p) for p in Path(f"/proc/{parent}/task/{parent}/children").read_text().split())


@pytest.mark.parametrize("form", ["spawn", "no-spawn", "torchrun"])
def test_sigterm_to_one_rank_stops_both_with_a_checkpoint(peer_dir, tmp_path, form):
    jobs, ranks = _launch(form, peer_dir / "data-bin", tmp_path, "--max-update", "100000", "--disable-validation")
    t0 = time.monotonic()
    _signal(ranks[1], signal.SIGTERM)
    rcs = [j.wait() for j in jobs]
    assert time.monotonic() - t0 < BOUND_S
    # every rank exits 143; torchrun reports its failed workers with its own status 1
    assert rcs == ([1] if form == "torchrun" else [128 + signal.SIGTERM] * len(jobs))
    (line,) = [line for j in jobs for line in j.errors()]
    m = re.fullmatch(r"fairseq-train: stopped by SIGTERM \(received by rank 1\) at update (\d+); saved (\S+); "
                     r"rerun the same command to resume", line)
    assert m, line
    assert m.group(2) == str(tmp_path / "checkpoint_last.pt")
    assert _updates(tmp_path / "checkpoint_last.pt") == int(m.group(1)) >= 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_last.pt"]  # no temp file, lock released


def test_sigterm_during_validation_stops_both_ranks(peer_dir, tmp_path):
    """Validation over the whole train split (tens of seconds) is interrupted between batches."""
    jobs = _no_spawn(peer_dir / "data-bin", tmp_path, "--max-update", "2", "--validate-interval-updates", "1",
                     "--valid-subset", "train", "--batch-size-valid", "1",
                     "--skip-invalid-size-inputs-valid-test")
    jobs[0].wait_for(r'"num_updates": "1"')
    time.sleep(1)  # validation after update 1 has begun
    t0 = time.monotonic()
    _signal(jobs[0].proc.pid, signal.SIGTERM)
    rcs = [j.wait() for j in jobs]
    assert time.monotonic() - t0 < BOUND_S
    assert rcs == [128 + signal.SIGTERM] * 2
    (line,) = jobs[0].errors()
    assert line.startswith("fairseq-train: stopped by SIGTERM (received by rank 0) at update 1; saved "), line
    assert jobs[1].errors() == []
    assert not [line for line in jobs[0].out if " | valid | " in line]  # stopped inside the validation
    assert _updates(tmp_path / "checkpoint_last.pt") == 1


def test_killed_rank_ends_the_spawned_job_naming_it(peer_dir, tmp_path):
    job = Job(_train(peer_dir / "data-bin", tmp_path, "--distributed-world-size", "2", "--max-update", "100000",
                     "--disable-validation", "--save-interval-updates", "2"))
    job.wait_for(r"saved checkpoint \S+checkpoint_1_2\.pt")
    before = _updates(tmp_path / "checkpoint_last.pt")
    ranks = _workers(job.proc.pid)
    t0 = time.monotonic()
    _signal(ranks[1], signal.SIGKILL)
    rc = job.wait()
    assert time.monotonic() - t0 < BOUND_S
    assert rc == 128 + signal.SIGKILL
    assert f"fairseq-train: error: rank 1 (pid {ranks[1]}) was killed by SIGKILL; the job stopped" in job.errors()
    assert any(re.fullmatch(r"fairseq-train: error: rank 0: rank 1 is gone \(connection closed\); .*", line)
               for line in job.errors()), job.err
    assert _updates(tmp_path / "checkpoint_last.pt") >= before  # still a complete checkpoint


def test_killed_rank_0_ends_its_peer_naming_it(peer_dir, tmp_path):
    """--distributed-no-spawn: rank 0 also hosts the rendezvous store, so the survivor's roll call
    finds the store gone and names rank 0."""
    jobs, ranks = _launch("no-spawn", peer_dir / "data-bin", tmp_path, "--max-update", "100000",
                          "--disable-validation")
    t0 = time.monotonic()
    _signal(ranks[0], signal.SIGKILL)
    rcs = [j.wait() for j in jobs]
    assert time.monotonic() - t0 < BOUND_S
    assert rcs == [-signal.SIGKILL, 1]
    assert jobs[1].errors() == ["fairseq-train: error: rank 1: rank 0 is gone (connection closed); stopping "
                                f"without saving, no checkpoint has been saved in {tmp_path} yet"]


MARGIN_S = 40  # after --heartbeat-timeout: the roll call (at most 8 s), the exit, the launcher's clean-up


@pytest.mark.parametrize("form,stopped", [("no-spawn", 1), ("spawn", 0)])
def test_hung_peer_ends_the_job_after_heartbeat_timeout(peer_dir, tmp_path, form, stopped):
    """A rank that hangs (SIGSTOP: a stuck NFS read, a GPU hang, a debugger) ends the job within
    --heartbeat-timeout plus a bounded margin, rank 0 included: it hosts the rendezvous store, whose
    reads would wait on a stopped host forever (the survivor's roll call is the same code under every
    launcher; the spawned form also checks the launcher). One line names it, and no C++ frames come
    with it; spawned, the launcher and both workers end (a stopped worker cannot act on SIGTERM: it is
    killed)."""
    jobs, ranks = _launch(form, peer_dir / "data-bin", tmp_path, "--max-update", "100000", "--disable-validation",
                          "--heartbeat-timeout", "8")
    survivor = 1 - stopped
    _signal(ranks[stopped], signal.SIGSTOP)  # alive but silent: no connection is closed
    try:
        t0 = time.monotonic()
        rc = (jobs[0] if form == "spawn" else jobs[survivor]).wait(timeout=8 + MARGIN_S)
        elapsed = time.monotonic() - t0
        if form == "spawn":
            assert all(_gone(pid) for pid in ranks)
    finally:
        _signal(ranks[stopped], signal.SIGKILL)
        for j in jobs:
            j.kill()
    assert rc == 1 and elapsed < 8 + MARGIN_S
    assert [line for j in jobs for line in j.errors()] == [
        f"fairseq-train: error: rank {survivor}: rank {stopped} is gone (no answer within --heartbeat-timeout 8 s); "
        f"stopping without saving, no checkpoint has been saved in {tmp_path} yet"]
    assert not [line for j in jobs for line in j.err if "frame #" in line or "TCPStore" in line]


def _gone(pid: int) -> bool:
    """Whether process `pid` has ended (or is a zombie waiting to be reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


# ---------------------------------------------------------------- 4. numbers that mean what they say


def _run(argv, timeout=BOUND_S):
    p = subprocess.run([sys.executable, *argv], env=_env(), cwd=REPO, text=True, capture_output=True,
                       timeout=timeout)
    return p.returncode, p.stdout, [line for line in p.stderr.splitlines() if line.startswith("fairseq-")]


@pytest.mark.parametrize("lr", ["1e3", "1e6"])
def test_diverging_run_ends_with_the_divergence_message(peer_dir, tmp_path, lr):
    """--lr 1e3 keeps the loss finite but astronomically large (2 ** loss overflowed the perplexity);
    --lr 1e6 turns it NaN. Both end the same way."""
    rc, out, errors = _run(_train(peer_dir / "data-bin", tmp_path, "--lr", lr, "--clip-norm", "0",
                                  "--max-update", "50", "--disable-validation"))
    assert rc == 1
    (line,) = errors
    assert re.fullmatch(r"fairseq-train: error: training diverged at update \d+ \(loss \S+ bits, grad norm \S+\): "
                        r"NaN/inf or beyond 1024 bits; try a lower --lr or a --clip-norm", line), line


def test_perplexity_of_a_huge_loss_is_inf():
    from fairseq.criterions.masked_lm import reduce_mlm_metrics

    out = reduce_mlm_metrics([{"loss": 1e6, "sample_size": 10, "ntokens": 10}])
    assert out["ppl"] == float("inf") and out["loss"] > 1e5


def test_valid_split_emptied_by_the_size_filter_is_an_error(peer_dir, tmp_path):
    """Every valid sentence is longer than --tokens-per-sample 32: --skip-invalid-size-inputs-valid-test
    would validate on nothing (fairseq logs valid_loss 0 and saves that as checkpoint_best.pt)."""
    import numpy as np
    from fairseq.data import indexed_dataset

    data = tmp_path / "data"
    data.mkdir()
    for name in ("dict.txt", "train.bin", "train.idx"):
        (data / name).symlink_to(peer_dir / "data-bin" / name)
    builder = indexed_dataset.MMapIndexedDatasetBuilder(str(data / "valid.bin"))
    for i in range(20):
        builder.add_item(np.arange(4, 4 + 40 + i))
    builder.finalize(str(data / "valid.idx"))
    save = tmp_path / "ckpt"
    rc, out, errors = _run(_train(data, save, "--max-update", "2", "--skip-invalid-size-inputs-valid-test"))
    assert rc == 1
    assert errors == ["fairseq-train: error: --valid-subset valid: none of its 20 samples fits max_positions=32, "
                      "so there is nothing to validate on; raise --max-positions/--tokens-per-sample, choose "
                      "another --valid-subset or pass --disable-validation"]
    assert "begin training" not in out and not (save / "checkpoint_best.pt").exists()


def test_import_hf_answers_bad_weights_files_in_one_line(tmp_path):
    import pickle
    import zipfile

    import torch
    from safetensors.torch import save_file

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    good = {"roberta.embeddings.word_embeddings.weight": torch.zeros(8, 4)}
    torch.save(good, tmp_path / "good.bin")
    save_file(good, str(tmp_path / "good.safetensors"))
    evil_zip = tmp_path / "evil.bin"  # torch.save's zip layout with a code-running data.pkl
    with zipfile.ZipFile(evil_zip, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps(Evil()))
        z.writestr("archive/version", "3\n")
    cases = {
        "pytorch_model.bin": [("malicious pickle", evil_zip.read_bytes()), ("plain pickle", pickle.dumps(Evil())),
                              ("truncated", (tmp_path / "good.bin").read_bytes()[:300])],
        "model.safetensors": [("truncated", (tmp_path / "good.safetensors").read_bytes()[:60]),
                              ("garbage", b"\xff" * 64)],
    }
    for name, variants in cases.items():
        for what, payload in variants:
            hf = tmp_path / f"hf-{what.replace(' ', '-')}-{name}"
            hf.mkdir()
            (hf / "config.json").write_text('{"model_type": "roberta", "layer_norm_eps": 1e-05}')
            (hf / name).write_bytes(payload)
            rc, out, errors = _run(["-m", "fairseq_cli.import_hf", str(hf), str(tmp_path / "out")], timeout=60)
            assert rc == 1, (what, name)
            (line,) = errors
            assert line.startswith(f"fairseq-import-hf: error: {hf / name}: truncated, corrupt or unsafe weights "
                                   "file ("), (what, line)
            assert "Traceback" not in out
    assert not marker.exists()


def test_log_file_in_a_missing_directory_is_created(peer_dir, tmp_path):
    log = tmp_path / "logs" / "deeper" / "train.log"
    rc, out, errors = _run(_train(peer_dir / "data-bin", tmp_path / "ckpt", "--max-update", "1",
                                  "--disable-validation", "--log-file", str(log)))
    assert (rc, errors) == (0, [])
    assert "done training" in log.read_text()
    blocked = tmp_path / "a-file"
    blocked.write_text("x")
    rc, out, errors = _run(_train(peer_dir / "data-bin", tmp_path / "ckpt2", "--max-update", "1",
                                  "--log-file", str(blocked / "train.log")))
    assert rc == 2
    assert errors == [f"fairseq-train: error: --log-file {blocked / 'train.log'}: cannot write there "
                      "(File exists)"]
