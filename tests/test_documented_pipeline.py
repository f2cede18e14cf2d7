"""The documented path end to end, with no file copied by hand: fairseq-bpe train/encode -> fairseq-preprocess
--bpe-dir -> fairseq-train -> RobertaModel.from_pretrained(ckpt_dir, data_name_or_path="data-bin") -> encode."""
import json

import pytest
import torch

from fairseq import options
from fairseq.models.roberta import RobertaModel
from fairseq_cli import bpe, preprocess, train

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def _head(src, dst, n):
    with open(src, encoding="utf-8") as f:
        dst.write_text("".join(line for _, line in zip(range(n), f)), encoding="utf-8")


def test_bpe_preprocess_train_hub(peer_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _head(peer_dir / "raw" / "train.txt", tmp_path / "train.txt", 1500)
    _head(peer_dir / "raw" / "valid.txt", tmp_path / "valid.txt", 200)
    bpe.cli_main(["train", "--inputs", "train.txt", "--vocab-size", "600", "--output-dir", "bpe"])
    for split in ("train", "valid"):
        bpe.cli_main(["encode", "--encoder-json", "bpe/encoder.json", "--vocab-bpe", "bpe/vocab.bpe",
                      "--inputs", f"{split}.txt", "--outputs", f"{split}.bpe", "--keep-empty"])
    preprocess.cli_main(["--only-source", "--trainpref", "train.bpe", "--validpref", "valid.bpe",
                         "--destdir", "data-bin", "--bpe-dir", "bpe/"])
    for name in ("tokenizer.json", "encoder.json", "vocab.bpe"):
        assert (tmp_path / "data-bin" / name).read_bytes() == (tmp_path / "bpe" / name).read_bytes()
    log = (tmp_path / "data-bin" / "preprocess.log").read_text()
    assert "copied the BPE (tokenizer.json, encoder.json, vocab.bpe) from bpe/" in log
    pieces = {str(i) for i in json.loads((tmp_path / "bpe" / "tokenizer.json").read_text())["model"]["vocab"].values()}
    held = len(pieces & {line.split()[0] for line in (tmp_path / "data-bin" / "dict.txt").read_text().splitlines()})
    assert 0 < held < len(pieces)  # a BPE has pieces its own encoding of the text never emits
    assert f"dict.txt holds {held} of the BPE's {len(pieces)} pieces; the other {len(pieces) - held} never occur" in log
    train.main(options.parse_args_and_arch(options.get_training_parser(), (
        "data-bin --arch roberta_base --optimizer adam --encoder-layers 2 --encoder-embed-dim 16 --encoder-ffn-embed-dim 32 "
        "--encoder-attention-heads 2 --tokens-per-sample 32 --batch-size 8 --max-update 2 --lr 1e-3 "
        "--task masked_lm --criterion masked_lm --log-format none --save-dir checkpoints --no-epoch-checkpoints "
        "--max-valid-steps 1 --skip-invalid-size-inputs-valid-test").split()))
    roberta = RobertaModel.from_pretrained("checkpoints", checkpoint_file="checkpoint_best.pt",
                                           data_name_or_path="data-bin")
    roberta.eval()
    tokens = roberta.encode("Hello world!")
    assert tokens[0] == 0 and tokens[-1] == 2 and len(tokens) > 3
    assert roberta.decode(tokens) == "Hello world!"
    assert roberta.extract_features(tokens).shape == (1, len(tokens), 16)


def test_bpe_dir_errors_before_any_work(tmp_path):
    (tmp_path / "t.bpe").write_text("1 2 3\n")
    (tmp_path / "empty").mkdir()
    for bpe_dir, msg in ((tmp_path / "nope", "--bpe-dir: directory not found"),
                         (tmp_path / "empty", "no tokenizer.json and no encoder.json + vocab.bpe")):
        with pytest.raises(SystemExit) as e:
            preprocess.cli_main(["--only-source", "--trainpref", str(tmp_path / "t.bpe"),
                                 "--destdir", str(tmp_path / "out"), "--bpe-dir", str(bpe_dir)])
        assert str(e.value.code).startswith("fairseq-preprocess: error: --bpe-dir") and msg in str(e.value.code)
        assert not (tmp_path / "out").exists()
