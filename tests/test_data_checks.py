"""Data checked before it is trusted: each bad file is one line naming it, exit 1, and no update ran.

Tiny corpora are binarized by fairseq-preprocess into a temporary data-bin, then damaged the way
issue 23 found them: an .idx of another split, a changed dtype byte, flipped bytes, a short or
negative or non-UTF-8 dict.txt, an empty split, NaN importance, too-long validation lines, and a
checkpoint of another size or data layout.
"""
import random
import shlex
import shutil

import numpy as np
import pytest

from fairseq import options, tasks
from fairseq.data import checks
from fairseq.data.indexed_dataset import MMapIndexedDataset, MMapIndexedDatasetBuilder
from fairseq.data import TokenBlockDataset
from fairseq_cli import preprocess, train

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

TINY = ("-a roberta_base --encoder-layers 1 --encoder-embed-dim 16 --encoder-ffn-embed-dim 32 "
        "--encoder-attention-heads 2 --tokens-per-sample 16 --max-positions 32 --sample-break-mode complete "
        "--batch-size 4 --cpu --log-format none --optimizer adam --lr 1e-3 --max-update 2")


def _corpus(path, n, seed, long_line=None):
    rng = random.Random(seed)
    lines = [" ".join(f"w{rng.randint(0, 40)}" for _ in range(rng.randint(1, 10))) for _ in range(n)]
    if long_line is not None:
        lines[long_line] = " ".join(["w1"] * 40)
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def data_bin(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    _corpus(root / "train.txt", 120, 0)
    _corpus(root / "valid.txt", 12, 1)
    preprocess.main(preprocess.get_parser().parse_args(
        ["--only-source", "--trainpref", str(root / "train.txt"), "--validpref", str(root / "valid.txt"),
         "--destdir", str(root / "bin")]))
    return root / "bin"


@pytest.fixture
def data(data_bin, tmp_path):
    out = tmp_path / "bin"
    shutil.copytree(data_bin, out)
    return out


def _train(capsys, data, save_dir, extra=""):
    """fairseq-train's CLI in-process: (exit code, stderr lines, stdout)."""
    argv = shlex.split(f"{data} {TINY} --save-dir {save_dir} {extra}")
    with pytest.raises(SystemExit) as e:
        train.cli_main(argv)
    out = capsys.readouterr()
    return e.value.code, out.err.strip().splitlines(), out.out


def _fails_before_training(capsys, data, tmp_path, *needles, extra=""):
    code, err, out = _train(capsys, data, tmp_path / "save", extra)
    assert code == 1 and len(err) == 1 and "Traceback" not in err[0], err
    for n in needles:
        assert n in err[0], (n, err[0])
    assert "num_updates" not in out and not list((tmp_path / "save").glob("*.pt"))  # no update, nothing saved
    return err[0]


# -- the index and its .bin -----------------------------------------------------------------------
def test_idx_of_another_split(capsys, data, tmp_path):
    shutil.copy(data / "valid.idx", data / "train.idx")
    _fails_before_training(capsys, data, tmp_path, f"{data / 'train.bin'}: size/pointer mismatch with "
                           f"{data / 'train.idx'}", "an .idx of another split")


@pytest.mark.parametrize("code", [4, 6, 2])  # int32, float64, int8 instead of uint16
def test_changed_dtype_byte(capsys, data, tmp_path, code):
    idx = bytearray((data / "train.idx").read_bytes())
    assert idx[17] == 8  # uint16 for this small dictionary
    idx[17] = code
    (data / "train.idx").write_bytes(bytes(idx))
    _fails_before_training(capsys, data, tmp_path, f"{data / 'train.idx'}: pointer of sentence 1 is 16, but the "
                           "sizes before it give", "its dtype byte was changed")


def test_corrupt_pointer_names_sentence(data):
    idx = bytearray((data / "valid.idx").read_bytes())
    n = 12
    pos = 26 + 4 * n + 8 * 5  # pointer of sentence 5
    idx[pos] ^= 0x02
    (data / "valid.idx").write_bytes(bytes(idx))
    with pytest.raises(ValueError, match=r"valid.idx: pointer of sentence 5 is \d+, but the sizes before it give"):
        MMapIndexedDataset(str(data / "valid"))


def test_negative_size_names_sentence(data):
    idx = bytearray((data / "valid.idx").read_bytes())
    idx[26 + 4 * 3: 26 + 4 * 4] = (-1).to_bytes(4, "little", signed=True)
    (data / "valid.idx").write_bytes(bytes(idx))
    with pytest.raises(ValueError, match=r"valid.idx: sentence 3 has a negative size -1; the index is corrupt"):
        MMapIndexedDataset(str(data / "valid"))


# -- ids against the dictionary -------------------------------------------------------------------
def test_dict_shorter_than_ids(capsys, data, tmp_path):
    lines = (data / "dict.txt").read_text().splitlines()
    (data / "dict.txt").write_text("\n".join(lines[:10]) + "\n")  # 4 specials + 10 + <mask> = 15
    ds = MMapIndexedDataset(str(data / "valid"))  # loaded first
    flat = np.concatenate([ds[i].numpy() for i in range(len(ds))])
    first = int(np.flatnonzero(flat >= 15)[0])
    sentence = ds.sentence_at(first)
    line = _fails_before_training(capsys, data, tmp_path, f"{data / 'valid.bin'}: token id {int(flat[first])} in "
                                  f"sentence {sentence} is not below the dictionary size 15 ({data / 'dict.txt'})")
    assert "--srcdict" in line


def test_flipped_bytes_found_before_training(capsys, data, tmp_path):
    raw = bytearray((data / "train.bin").read_bytes())
    raw[200:210] = b"\xff" * 10  # token 100..104 become 65535
    (data / "train.bin").write_bytes(bytes(raw))
    sentence = MMapIndexedDataset(str(data / "train")).sentence_at(100)
    _fails_before_training(capsys, data, tmp_path, f"token id 65535 in sentence {sentence} is not below")


def test_mismatch_found_later_names_file_and_sentence(data):
    """The .bin changes after the start-up check (a file rewritten under a running job): the read that
    meets the bad id names the file and the sentence, for plain reads and for token blocks alike."""
    ds = MMapIndexedDataset(str(data / "train"))
    checks.check_token_ids(ds, 60, "dict.txt")
    blocks = TokenBlockDataset(ds, ds.sizes, 15, pad=1, eos=2, break_mode="complete")
    target = ds.sentence_at(150)
    with open(data / "train.bin", "r+b") as f:  # the mmap sees the change
        f.seek(300)
        f.write(b"\xff\xff")
    with pytest.raises(ValueError, match=rf"train.bin: token id 65535 in sentence {target} is not below the "
                                         rf"dictionary size 60"):
        ds[target]
    with pytest.raises(ValueError, match=rf"train.bin: token id 65535 in sentence {target} is not below"):
        for i in range(len(blocks)):
            blocks[i]


# -- empty splits ---------------------------------------------------------------------------------
def test_empty_train_split(capsys, data, tmp_path):
    builder = MMapIndexedDatasetBuilder(str(data / "train.bin"), dtype=np.uint16)
    builder.finalize(str(data / "train.idx"))
    _fails_before_training(capsys, data, tmp_path, "split 'train' is empty:", "0 sentences", extra="--max-epoch 3")


def test_blank_lines_under_complete_doc(capsys, data, tmp_path):
    (tmp_path / "blank.txt").write_text("\n\n\n\n")
    preprocess.main(preprocess.get_parser().parse_args(
        ["--only-source", "--validpref", str(tmp_path / "blank.txt"), "--srcdict", str(data / "dict.txt"),
         "--destdir", str(tmp_path / "blank")]))
    for ext in ("bin", "idx"):
        shutil.copy(tmp_path / "blank" / f"valid.{ext}", data / f"train.{ext}")
    _fails_before_training(capsys, data, tmp_path, "split 'train' gives 0 samples", "4 sentences",
                           "--sample-break-mode complete_doc", extra="--sample-break-mode complete_doc")


# -- dict.txt and the importance table ------------------------------------------------------------
def test_negative_count_in_dict(capsys, data, tmp_path):
    lines = (data / "dict.txt").read_text().splitlines()
    lines[2] = lines[2].split()[0] + " -5"
    (data / "dict.txt").write_text("\n".join(lines) + "\n")
    _fails_before_training(capsys, data, tmp_path, f"{data / 'dict.txt'}:3: negative count -5")


def test_non_utf8_dict(capsys, data, tmp_path):
    raw = (data / "dict.txt").read_bytes()
    (data / "dict.txt").write_bytes(raw[:20] + b"\xff\xfe 3\n" + raw[20:])
    _fails_before_training(capsys, data, tmp_path, f"{data / 'dict.txt'}:", "not valid UTF-8 (byte 20)")


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf"])
def test_non_finite_init_token_importance(capsys, data, tmp_path, bad):
    n = len(tasks.setup_task(_args(data)).dictionary)
    values = ["1.0"] * n
    values[7] = bad
    table = tmp_path / "imp.txt"
    table.write_text("\n".join(values) + "\n")
    _fails_before_training(capsys, data, tmp_path, f"--init-token-importance {table}: entry 7 is {float(bad)}",
                           extra=f"--token-drop 0.5 --encoder-layers 4 --init-token-importance {table}")


# -- validation samples longer than --tokens-per-sample -------------------------------------------
def _args(data, extra=""):
    return options.parse_args_and_arch(options.get_training_parser(), shlex.split(f"{data} {TINY} {extra}"))


def test_long_valid_line_found_at_start(capsys, data_bin, tmp_path):
    _corpus(tmp_path / "valid.txt", 12, 1, long_line=6)
    out = tmp_path / "bin"
    shutil.copytree(data_bin, out)
    preprocess.main(preprocess.get_parser().parse_args(
        ["--only-source", "--validpref", str(tmp_path / "valid.txt"), "--srcdict", str(data_bin / "dict.txt"),
         "--destdir", str(tmp_path / "v")]))
    for ext in ("bin", "idx"):
        shutil.copy(tmp_path / "v" / f"valid.{ext}", out / f"valid.{ext}")
    _fails_before_training(capsys, out, tmp_path, "split 'valid': 1 sample(s) longer than max_positions=16",
                           "42 tokens", "--skip-invalid-size-inputs-valid-test")
    # With the flag, validation skips it as training does, and the run trains and validates.
    trainer = train.main(_args(out, f"--skip-invalid-size-inputs-valid-test --save-dir {tmp_path / 's2'}"))
    assert trainer.num_updates == 2 and (tmp_path / "s2" / "checkpoint_best.pt").exists()


# -- checkpoints of another size or data layout ---------------------------------------------------
@pytest.fixture(scope="module")
def mid_epoch_checkpoint(data_bin, tmp_path_factory):
    """checkpoint_last.pt after 2 updates of a 4-batch... epoch, i.e. saved mid-epoch."""
    save = tmp_path_factory.mktemp("save")
    train.main(_args(data_bin, f"--save-dir {save} --disable-validation"))
    return save / "checkpoint_last.pt"


def test_restore_of_another_size(capsys, data_bin, tmp_path, mid_epoch_checkpoint):
    line = _fails_before_training(capsys, data_bin, tmp_path, f"{mid_epoch_checkpoint}: ", "has shape (",
                                  "in the checkpoint but", "another model size",
                                  extra=f"--restore-file {mid_epoch_checkpoint} --encoder-embed-dim 32 "
                                        f"--encoder-attention-heads 2 --reset-optimizer")
    assert ", 16) in the checkpoint but (" in line and ", 32) in this model" in line


def test_finetune_from_model_of_another_size(capsys, data_bin, tmp_path, mid_epoch_checkpoint):
    _fails_before_training(capsys, data_bin, tmp_path, f"{mid_epoch_checkpoint}: ", "in the checkpoint but",
                           extra=f"--finetune-from-model {mid_epoch_checkpoint} --encoder-ffn-embed-dim 48")


def test_resume_with_another_tokens_per_sample(capsys, data_bin, tmp_path, mid_epoch_checkpoint):
    save = tmp_path / "save"
    save.mkdir()
    shutil.copy(mid_epoch_checkpoint, save / "checkpoint_last.pt")
    code, err, out = _train(capsys, data_bin, save, "--tokens-per-sample 12 --max-update 3")
    assert code == 1 and len(err) == 1, err
    assert (f"{save / 'checkpoint_last.pt'}: saved 2 batches into epoch 1 with --tokens-per-sample 16, but this "
            f"run has --tokens-per-sample 12" in err[0])
    assert "--reset-dataloader" in err[0] and "num_updates" not in out
    # --reset-dataloader: the data starts over in the new layout, the model and optimizer continue.
    trainer = train.main(_args(data_bin, f"--save-dir {save} --tokens-per-sample 12 --max-update 3 "
                                         f"--reset-dataloader --disable-validation"))
    assert trainer.num_updates == 3
