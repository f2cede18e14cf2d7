"""One line instead of a traceback (docs/faults.md): each case runs the command's own code path in this
process (fairseq-train's worker_main, the commands' cli_main) and asserts the exit status, the single
`fairseq-...: error:` line naming the file (and line) and the cause, and that nothing was lost."""
from __future__ import annotations

import os
import pickle
import signal
import sys

import pytest
import torch

from fairseq import options
from fairseq.checkpoint import files
from fairseq.checkpoint.files import load_checkpoint_file
from fairseq.trainer import Trainer
from fairseq_cli import bpe, train
from test_faults import FLAGS
from test_launch import train_in_process


def _argv(data, save_dir, *extra):
    return [str(data), *FLAGS, "--save-dir", str(save_dir), "--disable-validation", *extra]


def _worker_main(argv, capsys):
    """fairseq-train's worker_main on `argv`: (exit status, its fairseq-train lines on stderr)."""
    args = options.parse_args_and_arch(options.get_training_parser(), argv)
    with pytest.raises(SystemExit) as e:
        train.worker_main(args)
    return e.value.code, [line for line in capsys.readouterr().err.splitlines() if line.startswith("fairseq-")]


@pytest.fixture(scope="module")
def trained(peer_dir, tmp_path_factory):
    """checkpoint_last.pt of 2 updates of the tests' 2-layer model."""
    save_dir = tmp_path_factory.mktemp("trained")
    train_in_process(_argv(peer_dir / "data-bin", save_dir, "--max-update", "2"))
    return save_dir / "checkpoint_last.pt"


def _variant(trained, tmp_path, change) -> str:
    state = torch.load(trained, weights_only=False)
    change(state)
    path = tmp_path / "variant.pt"
    torch.save(state, path)
    return str(path)


def test_restore_file_with_more_layers(peer_dir, tmp_path, trained, capsys):
    def add_layer(state):
        for k in [k for k in state["model"] if ".layers.1." in k]:
            state["model"][k.replace(".layers.1.", ".layers.2.")] = state["model"][k].clone()

    path = _variant(trained, tmp_path, add_layer)
    code, lines = _worker_main(_argv(peer_dir / "data-bin", tmp_path / "ckpt", "--restore-file", path), capsys)
    assert (code, lines) == (1, [f"fairseq-train: error: {path}: the checkpoint has 3 encoder layers but this model "
                                 "has 2; it was trained with another model size (--arch, --encoder-layers)"])


@pytest.mark.parametrize("history", [[{"foo": 1}], "not a list", [1, 2], [{"num_updates": -3}],
                                     [{"num_updates": "7"}]])
def test_malformed_optimizer_history_is_refused_not_resumed_at_update_0(peer_dir, tmp_path, trained, capsys, history):
    path = _variant(trained, tmp_path, lambda state: state.update(optimizer_history=history))
    code, lines = _worker_main(_argv(peer_dir / "data-bin", tmp_path / "ckpt", "--restore-file", path), capsys)
    assert (code, lines) == (1, [f"fairseq-train: error: {path}: optimizer_history is not fairseq's list of dicts "
                                 f"ending with num_updates (got {history!r}); pass --reset-optimizer to start the "
                                 "optimizer and the update count over"])
    assert not (tmp_path / "ckpt" / "checkpoint_last.pt").exists()


@pytest.mark.signals
@pytest.mark.parametrize("interval", ["2", "0"])
def test_second_sigint_during_the_stop_save_keeps_the_last_checkpoint(peer_dir, tmp_path, monkeypatch, capsys,
                                                                       interval):
    """Ctrl-C after update 3, and again while the stop save is being written (more than 2 s later, as the
    clock is moved): the save is abandoned, its temp file removed, checkpoint_last.pt of update 2 kept
    (or none, if none was saved), one line. Real SIGINTs to this process, run as a foreground one (a suite
    started in the background has SIGINT ignored, and fairseq-train then keeps ignoring it)."""
    from signal_setup import foreground_sigint

    step, write = Trainer.train_step, files._WriteErrors.write

    def train_step(self, samples):
        out = step(self, samples)
        if self.num_updates == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return out

    stop_save_writes = []

    def write_with_a_second_sigint(self, data):
        if train._Stop.signum is not None:
            stop_save_writes.append(len(data))
            if len(stop_save_writes) == 3:  # well into the file: torch's writer fails as it closes it
                train._Stop.at -= 3
                os.kill(os.getpid(), signal.SIGINT)  # handled here, in a callback of torch.save's C++ writer
        return write(self, data)

    monkeypatch.setattr(Trainer, "train_step", train_step)
    monkeypatch.setattr(files._WriteErrors, "write", write_with_a_second_sigint)
    monkeypatch.setattr(train._Stop, "aborted", False)
    save_dir = tmp_path / "ckpt"
    with foreground_sigint():
        code, lines = _worker_main(_argv(peer_dir / "data-bin", save_dir, "--max-update", "100",
                                         "--save-interval-updates", interval), capsys)
    note = "checkpoint_last.pt is the last complete save" if interval == "2" else \
        f"no checkpoint has been saved in {save_dir} yet"
    assert (code, lines) == (128 + signal.SIGINT, [f"fairseq-train: aborted by a second SIGINT; not saved, {note}"])
    kept = ["checkpoint_1_2.pt", "checkpoint_last.pt"] if interval == "2" else []
    assert sorted(os.listdir(save_dir)) == kept  # no temp file, lock released
    if kept:
        assert load_checkpoint_file(str(save_dir / "checkpoint_last.pt"))["optimizer_history"][-1]["num_updates"] == 2


def test_duplicate_symbol_in_dict_txt(peer_dir, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("train.bin", "train.idx"):
        (data / name).symlink_to(peer_dir / "data-bin" / name)
    lines = (peer_dir / "data-bin" / "dict.txt").read_text(encoding="utf-8").splitlines(keepends=True)
    (data / "dict.txt").write_text("".join(lines[:5] + [lines[1]] + lines[5:]), encoding="utf-8")
    code, errors = _worker_main(_argv(data, tmp_path / "ckpt", "--max-update", "1"), capsys)
    word = lines[1].rsplit(" ", 1)[0]
    assert (code, errors) == (1, [f"fairseq-train: error: {data / 'dict.txt'}:6: Duplicate word found when loading "
                                  f"Dictionary: {word!r} (add ' #fairseq:overwrite' at the end of the line to let it "
                                  "overwrite the earlier one)"])


@pytest.mark.parametrize("case", ["syntax", "import", "raises", "shadows", "taken"])
def test_user_dir_that_does_not_import_names_the_plugin_file_and_line(peer_dir, tmp_path, capsys, case):
    name = {"shadows": "tabnanny", "taken": "json"}.get(case, f"plugin_{case}")
    plugin = tmp_path / name
    plugin.mkdir()
    (plugin / "__init__.py").write_text("from . import model\n")
    (plugin / "model.py").write_text({"syntax": "x = 1\ndef f(:\n", "import": "import os\nimport not_a_module_xyz\n",
                                      "raises": "import torch\n\n\nx = undefined_name + 1\n"}.get(case, ""))
    with pytest.raises(SystemExit) as e:
        train.cli_main([*_argv(peer_dir / "data-bin", tmp_path / "ckpt"), "--user-dir", str(plugin)])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("fairseq-")]
    where = f"{plugin / 'model.py'}"
    expected = {
        "syntax": f"{where}:2: SyntaxError: invalid syntax",
        "import": f"{where}:2: ModuleNotFoundError: No module named 'not_a_module_xyz'",
        "raises": f"{where}:4: NameError: name 'undefined_name' is not defined",
        "shadows": f"its package name 'tabnanny' is also the name of the module "
                   f"{os.path.dirname(os.__file__)}/tabnanny.py, which it would hide; rename the directory",
        "taken": f"its package name 'json' is already taken by another module ({sys.modules['json'].__file__}); "
                 "rename the directory",
    }[case]
    assert (e.value.code, errors) == (2, [f"fairseq-train: error: --user-dir {plugin}: {expected}"])
    assert name not in sys.modules or case == "taken"


def test_init_token_importance_pickle_is_refused_unread(tmp_path):
    from fairseq.token_drop import load_importance_file

    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "importance.pt"
    path.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ValueError) as e:
        load_importance_file(str(path), 10)
    assert str(e.value) == (f"--init-token-importance {path}: a pickle of more than tensors, which "
                            "torch.load(weights_only=True) refuses unread; nothing in it ran")
    assert not marker.exists()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_bpe_encode_of_non_utf8_input_names_file_and_line_and_writes_nothing(peer_dir, tmp_path, workers):
    src = tmp_path / "in.txt"
    src.write_bytes(b"hello world\nthis is fine\nbad \xff byte\nmore\n")
    out = tmp_path / "out.bpe"
    fresh = tmp_path / "fresh.bpe"
    out.write_text("the old output\n")
    for target in (out, fresh):
        with pytest.raises(SystemExit) as e:
            bpe.cli_main(["encode", "--tokenizer-json", str(peer_dir / "tokenizer.json"), "--inputs", str(src),
                          "--outputs", str(target), "--workers", workers])
        assert e.value.code == f"fairseq-bpe: error: {src}:3: not valid UTF-8 (byte 29); fairseq-bpe reads UTF-8 text"
    assert out.read_text() == "the old output\n" and not fresh.exists()
    assert sorted(os.listdir(tmp_path)) == ["in.txt", "out.bpe"]  # no temp file left
