"""fairseq's own launches, as real processes on this machine (gloo on 127.0.0.1).

(a) ``--distributed-world-size 2``: one command spawns its two workers (fairseq's default);
(b) fairseq's multi-node form: two commands, each ``--distributed-init-method tcp://127.0.0.1:PORT
    --distributed-rank R --distributed-world-size 2 --distributed-no-spawn``;
(c) ``python -m torch.distributed.run --nproc_per_node 2``.

Each must log like a single process (the json train lines once, from rank 0, on stdout and in
--log-file) and end with the parameters of one process trained on the same global batch
(``--update-freq 2``; see tests/test_distributed.py for why the two agree), to 1e-6.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fairseq.checkpoint.files import load_checkpoint_file
from fairseq.distributed import utils as D

REPO = Path(__file__).resolve().parents[1]
UPDATES = 3
WAIT_S = 180  # a bound on every launch; a healthy one takes ~10 s here
FLAGS = [
    "--task", "masked_lm", "--arch", "roberta_base", "--encoder-layers", "4", "--encoder-embed-dim", "16",
    "--encoder-ffn-embed-dim", "32", "--encoder-attention-heads", "2", "--tokens-per-sample", "32",
    "--sample-break-mode", "complete", "--batch-size", "4", "--optimizer", "adam", "--lr", "1e-3",
    "--dropout", "0", "--attention-dropout", "0", "--cpu", "--log-format", "json", "--log-interval", "1",
    "--disable-validation", "--token-drop", "0.5", "--sctd-interval", "2", "--seed", "3",
    "--max-update", str(UPDATES), "--no-epoch-checkpoints",
]
VOLATILE = ("wps", "ups", "train_wall", "wall")  # timings: the only fields allowed to differ


def _records(lines, tag="train_inner"):
    """The json records of `tag` in log lines, without their timing fields."""
    out = []
    for line in lines:
        parts = line.split(" | ", 3)
        if len(parts) == 4 and parts[2] == tag:
            out.append({k: v for k, v in json.loads(parts[3]).items() if k not in VOLATILE})
    return out


def _env():
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") and not k.startswith("SLURM_")}
    env["PYTHONPATH"] = str(REPO)  # the worktree's code, also in spawned workers
    env["OMP_NUM_THREADS"] = "1"
    return env


def _train(data, save_dir, *extra):
    return ["-m", "fairseq_cli.train", str(data), *FLAGS, "--save-dir", str(save_dir),
            "--log-file", str(save_dir / "train.log"), *extra]


def _wait(procs):
    try:
        outs = [p.communicate(timeout=WAIT_S) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, f"exit {p.returncode}\n{out[-3000:]}\n{err[-3000:]}"
    return [out for out, _ in outs]


def _launch(*argvs):
    return _wait([subprocess.Popen([sys.executable, *a], env=_env(), cwd=REPO, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True) for a in argvs])


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(f"time | {record.levelname} | {record.name} | {record.getMessage()}")


def train_in_process(argv):
    """fairseq_cli.train.main on parsed `argv` in this process: (trainer, its train_inner records)."""
    from fairseq import options
    from fairseq_cli import train

    args = options.parse_args_and_arch(options.get_training_parser(), argv)
    tap, inner = _Lines(), logging.getLogger("train_inner")
    inner.addHandler(tap)
    inner.setLevel(logging.INFO)
    try:
        trainer = train.main(args)
    finally:
        inner.removeHandler(tap)
        inner.setLevel(logging.NOTSET)
    return trainer, _records(tap.lines)


@pytest.fixture(scope="module")
def reference(peer_dir, tmp_path_factory):
    """One process, --update-freq 2: the global batch of the 2-rank launches."""
    out = tmp_path_factory.mktemp("single")
    trainer, records = train_in_process(_train(peer_dir / "data-bin", out, "--update-freq", "2")[2:])
    return {"params": {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}, "records": records}


def _check(stdout: str, save_dir: Path, reference):
    lines = stdout.splitlines()
    records = _records(lines)
    assert [r["num_updates"] for r in records] == [str(u) for u in range(1, UPDATES + 1)]  # once: rank 0 only
    assert records == reference["records"]  # same losses, lr, gnorm, batch sizes as the single process
    assert len(_records(lines, "train")) == 1
    logged = (save_dir / "train.log").read_text().splitlines()
    assert _records(logged) == records and _records(logged, "train") == _records(lines, "train")
    saved = load_checkpoint_file(str(save_dir / "checkpoint_last.pt"))
    assert saved["extra_state"]["train_iterator"]["epoch"] == 1
    diff = max((saved["model"][k].float() - v.float()).abs().max().item() for k, v in reference["params"].items())
    assert diff < 1e-6, diff


def test_spawned_workers_log_and_train_like_one_process(peer_dir, tmp_path, reference):
    (out,) = _launch(_train(peer_dir / "data-bin", tmp_path, "--distributed-world-size", "2"))
    assert "training on 2 process(es)" in out
    _check(out, tmp_path, reference)


def test_fairseq_multi_node_flags_form_one_job(peer_dir, tmp_path, reference):
    url = f"tcp://127.0.0.1:{D.free_port()}"
    flags = ["--distributed-init-method", url, "--distributed-world-size", "2", "--distributed-no-spawn"]
    out0, out1 = _launch(*[_train(peer_dir / "data-bin", tmp_path, *flags, "--distributed-rank", str(r))
                           for r in (0, 1)])
    assert "training on 2 process(es)" in out0 and f"distributed init (rank 0): {url}" in out0
    assert _records(out1.splitlines()) == []  # rank 1 logs warnings only
    _check(out0, tmp_path, reference)


def test_torchrun_launch(peer_dir, tmp_path, reference):
    (out,) = _launch(["-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
                      "--master_addr", "127.0.0.1", "--master_port", str(D.free_port()),
                      *_train(peer_dir / "data-bin", tmp_path)])
    assert "training on 2 process(es)" in out
    _check(out, tmp_path, reference)


def test_worker_errors_are_one_line(tmp_path, capsys, monkeypatch):
    """Bad input found inside a (spawned) worker: one line and exit status 1 there; the parent exits
    with the worker's status instead of printing mp.spawn's traceback."""
    from fairseq import options
    from fairseq_cli import train

    args = options.parse_args_and_arch(options.get_training_parser(), _train(tmp_path / "nowhere", tmp_path)[2:])
    with pytest.raises(SystemExit) as e:
        train.worker_main(args)
    assert e.value.code == 1
    assert capsys.readouterr().err.startswith("fairseq-train: error: dictionary not found")

    def worker_failed(*a, **k):
        raise torch.multiprocessing.ProcessExitedException("process 0 terminated with exit code 1", 0, 1, 1)

    monkeypatch.setattr(train.launch, "call_main", worker_failed)
    root_handlers = list(logging.getLogger().handlers)
    with pytest.raises(SystemExit) as e:
        train.cli_main(_train(tmp_path / "nowhere", tmp_path)[2:])
    for h in set(logging.getLogger().handlers) - set(root_handlers):  # cli_main's stdout handler
        logging.getLogger().removeHandler(h)
    assert e.value.code == 1 and capsys.readouterr().err == ""
