"""Multi-file outputs committed as a unit (docs/faults.md): a reader never sees two runs' files mixed.

fairseq-preprocess is killed (SIGKILL at a controlled point: the rename of train.bin in its commit,
after dict.txt was replaced) into a directory that held an older dataset; fairseq-train refuses the
mix in one line, and the next fairseq-preprocess cleans the killed run's temp files and commits.
fairseq-export-hf replaces an earlier export of its own as a whole, refuses a folder of the user's, and
a killed export leaves the old folder whole.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fairseq.data.dataset_commit import MARKER
from fairseq_cli import export_hf
from fairseq_cli.preprocess import get_parser, main
from test_faults import FLAGS, _env

REPO = Path(__file__).resolve().parents[1]
DATA = ["dict.txt", "train.bin", "train.idx", "valid.bin", "valid.idx"]
# Runs a command's cli_main(argv), SIGKILLing itself when MODULE.FUNCTION (argv[1] = "module:function:name")
# is called with a second argument whose basename is NAME: a kill at the same point every time.
KILL_AT = r"""
import importlib, os, signal, sys
where, attr, name = sys.argv[1].split(":")
module = importlib.import_module(where)
real = getattr(module, attr)
def hooked(*a, **k):
    if os.path.basename(str(a[1])) == name:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*a, **k)
setattr(module, attr, hooked)
importlib.import_module(sys.argv[2]).cli_main(sys.argv[3:])
"""


def _preprocess_argv(train, valid, dest):
    return ["--only-source", "--trainpref", str(train), "--validpref", str(valid), "--destdir", str(dest),
            "--workers", "1"]


def _kill_at(where: str, command: str, argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", KILL_AT, where, command, *map(str, argv)], env=_env(), cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_preprocess_killed_between_renames_leaves_no_mix_that_trains(peer_dir, tmp_path, caplog):
    lines = (peer_dir / "bpe" / "train.bpe").read_text(encoding="utf-8").splitlines(keepends=True)
    old, new = tmp_path / "old.bpe", tmp_path / "new.bpe"
    old.write_text("".join(lines[:3000]), encoding="utf-8")
    new.write_text("".join(lines[-3000:]), encoding="utf-8")
    valid = peer_dir / "bpe" / "valid.bpe"
    dest, reference = tmp_path / "data-bin", tmp_path / "reference"
    main(get_parser().parse_args(_preprocess_argv(old, valid, dest)))
    main(get_parser().parse_args(_preprocess_argv(new, valid, reference)))
    before = {f: (dest / f).read_bytes() for f in DATA}
    assert before["dict.txt"] != (reference / "dict.txt").read_bytes()

    killed = _kill_at("os:replace:train.bin", "fairseq_cli.preprocess", _preprocess_argv(new, valid, dest))
    assert killed.returncode == -signal.SIGKILL
    # on disk: the new dict.txt beside the old train.bin, as the issue found it; the marker says so
    assert (dest / "dict.txt").read_bytes() == (reference / "dict.txt").read_bytes()
    assert (dest / "train.bin").read_bytes() == before["train.bin"]
    assert json.loads((dest / MARKER).read_text())["files"] == sorted(DATA + ["preprocess.log"])
    leftovers = sorted(p.name for p in dest.iterdir() if p.name.startswith(".tmp-"))
    assert leftovers and all(p.startswith(f".tmp-{json.loads((dest / MARKER).read_text())['pid']}-")
                             for p in leftovers)

    train = subprocess.run([sys.executable, "-m", "fairseq_cli.train", str(dest), *FLAGS, "--save-dir",
                            str(tmp_path / "ckpt"), "--max-update", "1"], env=_env(), cwd=REPO,
                           capture_output=True, text=True, timeout=300)
    assert train.returncode == 1
    pid, files = json.loads((dest / MARKER).read_text())["pid"], ", ".join(sorted(DATA + ["preprocess.log"]))
    assert [line for line in train.stderr.splitlines() if line.startswith("fairseq-")] == [
        f"fairseq-train: error: {dest}: fairseq-preprocess (pid {pid} on host {os.uname().nodename}) was interrupted "
        f"while replacing {files}, so they may mix two runs' files; rerun fairseq-preprocess into {dest} (the marker "
        f"{MARKER} says so)"]
    assert "begin training" not in train.stdout and not (tmp_path / "ckpt" / "checkpoint_last.pt").exists()

    main(get_parser().parse_args(_preprocess_argv(new, valid, dest)))  # the rerun
    for name in leftovers:
        assert f"removed {dest / name} (" in caplog.text
    assert sorted(os.listdir(dest)) == sorted(DATA + ["preprocess.log"])  # no marker, no temp file, no lock
    for f in DATA:
        assert (dest / f).read_bytes() == (reference / f).read_bytes(), f


def test_preprocess_refuses_a_line_beyond_the_limit_early(tmp_path):
    """A single line longer than MAX_LINE_BYTES (16 MiB) is refused as soon as it is read, not after
    tokenizing it into gigabytes; nothing is left behind."""
    from fairseq.file_chunker_utils import MAX_LINE_BYTES

    corpus = tmp_path / "one-line.txt"
    with open(corpus, "w") as f:
        f.write("1 2 3\n")
        f.write("7 " * (MAX_LINE_BYTES // 2 + 1024) + "\n")
    dest = tmp_path / "bin"
    with pytest.raises(ValueError) as e:
        main(get_parser().parse_args(["--only-source", "--trainpref", str(corpus), "--destdir", str(dest)]))
    assert str(e.value) == (f"{corpus}: the line at byte 6 is longer than 16 MiB, the longest line fairseq-preprocess "
                            "reads (its tokens would need ~12x that in memory); split it into shorter lines")
    assert not dest.exists()


@pytest.fixture
def export_args(peer_dir):
    return [str(peer_dir / "checkpoint_last.no-optimizer-state.pt")], [
        "--dict", str(peer_dir / "data-bin" / "dict.txt"), "--tokenizer-json", str(peer_dir / "tokenizer.json")]


def test_export_hf_replaces_its_own_folder_as_a_unit_and_refuses_the_users(tmp_path, export_args, caplog):
    checkpoint, tokenizer = export_args
    hf = tmp_path / "hf"
    export_hf.cli_main([*checkpoint, str(hf), *tokenizer])
    assert {"tokenizer.json", "vocab.json", "merges.txt"} <= set(os.listdir(hf))
    export_hf.cli_main([*checkpoint, str(hf)])  # no tokenizer this time: none of the old one may stay
    assert sorted(os.listdir(hf)) == ["config.json", "model.safetensors"]
    assert "replacing the earlier export in" in caplog.text
    assert oct(hf.stat().st_mode & 0o777) == oct(0o777 & ~_umask())

    users = tmp_path / "users"
    users.mkdir()
    (users / "README.md").write_text("mine")
    (users / "config.json").write_text("{}")
    with pytest.raises(SystemExit) as e:
        export_hf.cli_main([*checkpoint, str(users), *tokenizer])
    assert e.value.code == (f"fairseq-export-hf: error: OUTDIR {users} is not empty and not an earlier "
                            "fairseq-export-hf folder (it holds README.md); choose a new or empty folder, or "
                            "remove those")
    assert sorted(os.listdir(users)) == ["README.md", "config.json"] and (users / "config.json").read_text() == "{}"
    assert sorted(os.listdir(tmp_path)) == ["hf", "users"]  # no temp folder left beside them


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_export_hf_killed_midway_leaves_the_old_folder_whole(tmp_path, export_args, caplog):
    checkpoint, tokenizer = export_args
    hf = tmp_path / "hf"
    export_hf.cli_main([*checkpoint, str(hf), *tokenizer])
    before = {p.name: p.read_bytes() for p in hf.iterdir()}
    # killed while writing the weights, after the new tokenizer files
    killed = _kill_at("safetensors.torch:save_file:model.safetensors", "fairseq_cli.export_hf",
                      [*checkpoint, hf, *tokenizer])
    assert killed.returncode == -signal.SIGKILL
    assert {p.name: p.read_bytes() for p in hf.iterdir()} == before
    (left,) = [p for p in tmp_path.iterdir() if p.name != "hf"]
    assert left.name.startswith(".tmp-") and (left / "tokenizer.json").exists()
    export_hf.cli_main([*checkpoint, str(hf), *tokenizer])
    assert f"removed {left}, left by a fairseq-export-hf that never finished" in caplog.text
    assert sorted(os.listdir(tmp_path)) == ["hf"]


def test_folder_replaced_without_an_exchange_and_restored_after_a_kill(tmp_path, monkeypatch):
    """Where renameat2 cannot exchange (say NFS), the old folder is moved aside, then the new one takes the
    name. A writer killed between the two renames leaves no OUTDIR: the next one puts the old folder back
    (never a mix, nothing of the user's lost) and removes the unfinished one."""
    from fairseq import atomic_files

    monkeypatch.setattr(atomic_files, "_exchange", lambda a, b: False)
    target = tmp_path / "hf"
    target.mkdir()
    (target / "config.json").write_text("old")
    new = atomic_files.NewDir(str(target))
    Path(new.path, "config.json").write_text("new")
    new.commit()
    assert sorted(os.listdir(tmp_path)) == ["hf"] and (target / "config.json").read_text() == "new"

    os.rename(target, tmp_path / ".tmp-4242-hf-abcd1234.old")  # killed between the renames
    (tmp_path / ".tmp-4242-hf-abcd1234").mkdir()
    (tmp_path / ".tmp-4242-hf-abcd1234" / "config.json").write_text("newer")
    (tmp_path / ".tmp-notes").mkdir()  # not ours
    assert atomic_files.remove_abandoned_dirs(str(target)) == [str(tmp_path / ".tmp-4242-hf-abcd1234")]
    assert sorted(os.listdir(tmp_path)) == [".tmp-notes", "hf"] and (target / "config.json").read_text() == "new"
