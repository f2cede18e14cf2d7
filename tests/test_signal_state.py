"""The suite passes however it is started, and fairseq-train does what a user on a cluster wants with signals.

A shell that starts a job in the background (`pytest ... &` in a script, `nohup ... &`, many CI runners and
batch schedulers) starts it with SIGINT ignored, and every child inherits that. So:

- fairseq-train started that way keeps ignoring SIGINT (Ctrl-C at the terminal is for the foreground job;
  every Unix tool and Python itself behave so) and still saves and stops on SIGTERM (kill, scancel);
  in the foreground SIGINT saves and stops it (docs/faults.md);
- a test that sends SIGINT sets up the state its child starts with (tests/signal_setup.py) and is marked
  `signals`; the last tests here rerun those in a suite started in the background, and under setsid.
"""
from __future__ import annotations

import ast
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fairseq.distributed import faults
from signal_setup import as_background_job, as_foreground_job

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
TINY = ("--task masked_lm --arch roberta_base --encoder-layers 2 --encoder-embed-dim 16 --encoder-ffn-embed-dim 32 "
        "--encoder-attention-heads 2 --tokens-per-sample 32 --sample-break-mode complete --batch-size 4 "
        "--optimizer adam --lr 1e-4 --cpu --log-format json --log-interval 1 --seed 3 --num-workers 0 "
        "--no-epoch-checkpoints --disable-validation --max-update 100000").split()


def test_stop_signals_follow_the_inherited_sigint():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        assert faults.stop_signals() == (signal.SIGTERM,)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        assert faults.stop_signals() == (signal.SIGTERM, signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, previous)


def _updates_in(log: Path) -> int:
    found = re.findall(r'"num_updates": "(\d+)"', log.read_text())
    return int(found[-1]) if found else 0


def _wait_for_updates(proc, log: Path, n: int, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while _updates_in(log) < n:
        assert proc.poll() is None, f"fairseq-train ended early ({proc.returncode}):\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no update {n} within {timeout} s:\n{log.read_text()[-3000:]}"
        time.sleep(0.1)
    return _updates_in(log)


@pytest.mark.signals
@pytest.mark.parametrize("start", ["foreground", "background"])
def test_fairseq_train_sigint_in_the_foreground_sigterm_always(peer_dir, tmp_path, start):
    """Foreground: SIGINT saves checkpoint_last.pt and exits 130. Background (SIGINT ignored at start):
    SIGINT changes nothing, the run goes on; SIGTERM saves and exits 143."""
    log = tmp_path / "out.log"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "fairseq_cli.train", str(peer_dir / "data-bin"), *TINY,
                                 "--save-dir", str(tmp_path / "ckpt")], cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT,
                                preexec_fn=as_foreground_job if start == "foreground" else as_background_job)
    try:
        _wait_for_updates(proc, log, 3)
        proc.send_signal(signal.SIGINT)
        if start == "background":
            at = _updates_in(log)
            _wait_for_updates(proc, log, at + 5)  # still training
            proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    name = "SIGINT" if start == "foreground" else "SIGTERM"
    assert rc == 128 + signal.Signals[name], text[-3000:]
    assert re.search(rf"fairseq-train: stopped by {name} \(received by rank 0\) at update \d+; saved ", text), text[-3000:]
    assert (tmp_path / "ckpt" / "checkpoint_last.pt").is_file()
    assert ("SIGINT is ignored (inherited" in text) == (start == "background")


# ------------------------------------------------------------------ the suite started in the background


def _marked_signals(node) -> bool:
    return any("signals" in ast.unparse(d) for d in node.decorator_list)


def _test_functions():
    for path in sorted(TESTS.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                yield path, node


def test_tests_that_send_sigint_are_marked():
    """A test that sends SIGINT (os.kill, killpg, send_signal) depends on what its child does with it, so it
    must set that up and carry the `signals` mark (which the test below reruns in the background)."""
    sending = re.compile(r"(kill|killpg|send_signal)\([^)]*SIGINT")
    unmarked = [f"{path.name}::{node.name}" for path, node in _test_functions()
                if sending.search(ast.unparse(node)) and not _marked_signals(node)]
    assert unmarked == []
    assert len([n for _, n in _test_functions() if _marked_signals(n)]) >= 2


def _signals_files():
    return sorted({str(path.relative_to(REPO)) for path, node in _test_functions() if _marked_signals(node)})


PROBE = ("import os, signal; h = signal.getsignal(signal.SIGINT); "
         "print('probe: SIGINT', getattr(h, 'name', 'handler'), 'session', os.getsid(0), flush=True)")


@pytest.mark.slow
def test_signal_dependent_tests_pass_when_the_suite_starts_in_the_background(tmp_path):
    """The `signals` tests in a pytest started as `nohup bash -c 'pytest ... & wait'` would start it (SIGINT
    ignored), and the same under setsid (a new session, no controlling terminal): both pass."""
    files = _signals_files()
    pytest_cmd = " ".join([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "signals", *files])
    # each command in the background of a non-interactive bash, as a CI script or `nohup bash -c` would run it
    # (bash ignores SIGINT for `cmd &`, though not for a `( ... ) &` subshell)
    script = f"{sys.executable} -c \"{PROBE}\" & wait $!; {pytest_cmd} & wait $!"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    starts = {"nohup ... &": ["nohup", "bash", "-c", script], "setsid": ["setsid", "-w", "bash", "-c", script]}
    procs = {}
    for name, argv in starts.items():
        out = open(tmp_path / f"{len(procs)}.log", "w")
        # this process's own SIGINT state must not matter either: the children start from the default
        procs[name] = (subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, preexec_fn=as_foreground_job), out)
    results = {}
    for name, (proc, out) in procs.items():
        try:
            rc = proc.wait(timeout=600)
        finally:
            if proc.poll() is None:
                proc.kill()
            out.close()
        results[name] = (rc, Path(out.name).read_text())
    for name, (rc, text) in results.items():
        probe = re.search(r"probe: SIGINT (\w+) session (\d+)", text)
        assert probe and probe.group(1) == "SIG_IGN", f"{name}: the suite did not start with SIGINT ignored\n{text}"
        assert (int(probe.group(2)) != os.getsid(0)) == (name == "setsid"), name
        assert rc == 0, f"{name}: exit {rc}\n{text[-4000:]}"
        passed = re.search(r"(\d+) passed", text)
        assert passed and int(passed.group(1)) >= 3 and " failed" not in text, f"{name}:\n{text[-4000:]}"
