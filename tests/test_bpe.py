"""GPT-2 byte-level BPE: reproduces the fixture's .bpe files, GPT-2 file export, CLI, word begins."""
import itertools
import json

import pytest

from fairseq.data import Dictionary
from fairseq.data.bpe import GPT2BPE, bytes_to_unicode, encode_lines, export_gpt2_files, load_tokenizer, word_begins
from fairseq_cli.bpe import encode_main, get_parser, train_main


def first_lines(path, n):
    with open(path, encoding="utf-8") as f:
        return [ln.rstrip("\n") for ln in itertools.islice(f, n)]


@pytest.fixture(scope="module")
def gpt2_files(peer_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("gpt2")
    export_gpt2_files(load_tokenizer(tokenizer_json=str(peer_dir / "tokenizer.json")), str(out))
    return out


def test_tokenizer_json_reproduces_fixture_bpe(peer_dir):
    tok = load_tokenizer(tokenizer_json=str(peer_dir / "tokenizer.json"))
    for split, n in (("valid", 10**9), ("train", 3000)):
        raw = first_lines(peer_dir / f"raw/{split}.txt", n)
        want = first_lines(peer_dir / f"bpe/{split}.bpe", n)
        assert encode_lines(tok, raw) == want, split


def test_exported_gpt2_files_give_same_ids(peer_dir, gpt2_files):
    vocab = json.loads((gpt2_files / "encoder.json").read_text(encoding="utf-8"))
    assert len(vocab) == 8000 and (gpt2_files / "vocab.bpe").read_text().startswith("#version: 0.2\n")
    tok = load_tokenizer(str(gpt2_files / "encoder.json"), str(gpt2_files / "vocab.bpe"))
    raw = first_lines(peer_dir / "raw/valid.txt", 10**9)
    assert encode_lines(tok, raw) == first_lines(peer_dir / "bpe/valid.bpe", 10**9)


def test_cli_encode_workers_keep_empty(peer_dir, gpt2_files, tmp_path):
    out1, out2 = tmp_path / "a.bpe", tmp_path / "b.bpe"
    raw = str(peer_dir / "raw/valid.txt")
    encode_main(get_parser().parse_args(
        ["encode", "--tokenizer-json", str(peer_dir / "tokenizer.json"), "--inputs", raw, "--outputs", str(out1),
         "--keep-empty"]))
    encode_main(get_parser().parse_args(
        ["encode", "--encoder-json", str(gpt2_files / "encoder.json"), "--vocab-bpe",
         str(gpt2_files / "vocab.bpe"), "--inputs", raw, "--outputs", str(out2), "--keep-empty", "--workers", "2"]))
    want = (peer_dir / "bpe/valid.bpe").read_bytes()
    assert out1.read_bytes() == want and out2.read_bytes() == want


def test_encode_strips_and_drops_empty_without_keep_empty(peer_dir, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("  Hello world  \n\n   \nagain\n", encoding="utf-8")
    out = tmp_path / "out.txt"
    args = ["encode", "--tokenizer-json", str(peer_dir / "tokenizer.json"), "--inputs", str(src),
            "--outputs", str(out)]
    encode_main(get_parser().parse_args(args))
    bpe = GPT2BPE(tokenizer_json=str(peer_dir / "tokenizer.json"))
    assert out.read_text().splitlines() == [bpe.encode("Hello world"), bpe.encode("again")]
    encode_main(get_parser().parse_args(args + ["--keep-empty"]))
    assert out.read_text().splitlines() == [bpe.encode("Hello world"), "", "", bpe.encode("again")]


def test_gpt2bpe_roundtrip_and_word_begins(peer_dir):
    bpe = GPT2BPE(tokenizer_json=str(peer_dir / "tokenizer.json"))
    text = "The quick brown fox — naïve café 東京."
    assert bpe.decode(bpe.encode(text)) == text
    assert bpe.is_beginning_of_word(bpe.encode(" the").split()[0])
    assert not bpe.is_beginning_of_word(bpe.encode("the").split()[0])
    assert not bpe.is_beginning_of_word("<mask>")
    d = Dictionary.load(str(peer_dir / "data-bin/dict.txt"))
    d.add_symbol("<mask>")
    wb = word_begins(d, bpe)
    assert wb.dtype == bool and len(wb) == len(d)
    assert wb[:4].all() and wb[d.index("madeupword0000")] and not wb[d.index("<mask>")]
    for i in range(4, 200):
        assert wb[i] == bpe.decode(d[i]).startswith(" ")


def test_bytes_to_unicode_is_a_bijection():
    t = bytes_to_unicode()
    assert len(t) == 256 and len(set(t.values())) == 256
    assert t[ord(" ")] == "Ġ" and t[ord("A")] == "A"


def test_train_small_bpe(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("low lower lowest newer wider\n" * 50 + "the cat sat on the mat\n" * 50, encoding="utf-8")
    out = tmp_path / "bpe"
    train_main(get_parser().parse_args(["train", "--inputs", str(corpus), "--vocab-size", "300",
                                        "--min-frequency", "2", "--output-dir", str(out)]))
    for f in ("tokenizer.json", "encoder.json", "vocab.bpe"):
        assert (out / f).is_file()
    a = load_tokenizer(tokenizer_json=str(out / "tokenizer.json"))
    b = load_tokenizer(str(out / "encoder.json"), str(out / "vocab.bpe"))
    lines = ["the lowest cat", "newer mat sat"]
    assert encode_lines(a, lines) == encode_lines(b, lines)
    assert len(encode_lines(a, ["the lowest cat"])[0].split()) < len("the lowest cat")


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="--encoder-json"):
        load_tokenizer(str(tmp_path / "no.json"), str(tmp_path / "no.bpe"))
    with pytest.raises(ValueError, match="--tokenizer-json"):
        load_tokenizer()
    with pytest.raises(FileNotFoundError, match="--inputs"):
        train_main(get_parser().parse_args(["train", "--inputs", str(tmp_path / "x"), "--output-dir", "y"]))
