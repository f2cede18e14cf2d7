"""fairseq.data.encoders: the --bpe / --tokenizer registries and their encoders, id for id as fairseq 0.12.2's.

The expected values below were recorded from the real fairseq 0.12.2 (gpt2_bpe.get_encoder, build_bpe of
gpt2 / bytes / characters, build_tokenizer of space) on the GPT-2-format files exported from the fixture
tokenizer.json; test_side_by_side_with_real_fairseq recomputes them with the real package when its venv
is there (/tmp/fairseq-peer-venv, or $FAIRSEQ_PEER_VENV).
"""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fairseq import file_utils, options, registry
from fairseq.checkpoint.cfg import args_to_cfg
from fairseq.data import encoders
from fairseq.data.encoders.gpt2_bpe import DEFAULT_ENCODER_JSON, DEFAULT_VOCAB_BPE, get_encoder

PEER_VENV = Path(os.environ.get("FAIRSEQ_PEER_VENV", "/tmp/fairseq-peer-venv"))

TEXTS = ["Hello world", " leading space", "trailing space ", "multiple   spaces\tand\ttabs\n",
         "It's, they're, we've, I'm, you'll, he'd; CAPITAL'S", "numbers 12345 and 3.14159",
         "unicode: naïve café 東京 😀 👍🏽", "line\u2028sep\u00a0nbsp", "", "   "]
# fairseq 0.12.2's get_encoder(encoder.json, vocab.bpe).encode(text) for TEXTS
GPT2_IDS = [
    [2597, 366, 5880, 1857], [2730, 1996], [3182, 3265, 1996, 220],
    [4831, 375, 410, 3124, 197, 394, 197, 83, 3786, 198],
    [1657, 571, 11, 1104, 4600, 11, 635, 6, 417, 11, 352, 6, 76, 11, 753, 4670, 11, 630, 6314, 26, 501, 5592, 51,
     3718, 6, 50],
    [7733, 4934, 18, 5588, 309, 973, 13, 5701, 4897, 24],
    [7944, 25, 294, 64, 127, 107, 417, 268, 3127, 127, 102, 220, 162, 251, 109, 160, 118, 105, 220, 172, 253, 246,
     222, 220, 172, 253, 239, 235, 172, 253, 237, 121],
    [930, 158, 222, 101, 6383, 126, 254, 77, 65, 4488], [], [2672],
]
BYTES_6 = "u n i c o d e : ▁ n a Ã ¯ v e ▁ c a f Ã © ▁ æ Ɲ ± ä º ¬ ▁ ð Ɵ Ƙ ƀ ▁ ð Ɵ Ƒ ƍ ð Ɵ Ə ½"
CHARACTERS_3 = "m u l t i p l e ▁ ▁ ▁ s p a c e s \t a n d \t t a b s \n"

# What the real fairseq computes (run there by test_side_by_side_with_real_fairseq, here on ours).
PROBE = r'''
import argparse, json, sys
from fairseq.data import encoders
from fairseq.data.encoders.gpt2_bpe import get_encoder
TEXTS = json.loads(sys.argv[3])
e = get_encoder(sys.argv[1], sys.argv[2])
out = {"gpt2": [e.encode(t) for t in TEXTS]}
out["gpt2_decode"] = [e.decode(ids) for ids in out["gpt2"]]
b = encoders.build_bpe(argparse.Namespace(bpe="gpt2", gpt2_encoder_json=sys.argv[1], gpt2_vocab_bpe=sys.argv[2]))
out["gpt2bpe"] = [b.encode(t) for t in TEXTS]
out["gpt2bpe_decode"] = [b.decode(x + " <mask>") for x in out["gpt2bpe"]]
out["gpt2bpe_bow"] = [b.is_beginning_of_word(t) for t in ["1001", "50", "3"]]
for name in ("bytes", "characters"):
    x = encoders.build_bpe(argparse.Namespace(bpe=name))
    out[name] = [x.encode(t) for t in TEXTS]
    out[name + "_decode"] = [x.decode(t) for t in out[name]]
sp = encoders.build_tokenizer(argparse.Namespace(tokenizer="space"))
out["space"] = [sp.encode(t) for t in TEXTS]
print("PROBE" + json.dumps(out))
'''


@pytest.fixture(scope="module")
def gpt2(peer_dir, tmp_path_factory):
    """encoder.json + vocab.bpe in GPT-2's format for the fixture's byte-level BPE (fairseq-bpe's export)."""
    from fairseq.data.bpe import export_gpt2_files, load_tokenizer

    folder = tmp_path_factory.mktemp("gpt2")
    export_gpt2_files(load_tokenizer(tokenizer_json=str(peer_dir / "tokenizer.json")), str(folder))
    return folder / "encoder.json", folder / "vocab.bpe"


def _probe_here(enc, merges) -> dict:
    out = {}
    code = PROBE.replace('print("PROBE" + json.dumps(out))', "")
    argv = sys.argv
    sys.argv = ["probe", str(enc), str(merges), json.dumps(TEXTS)]
    try:
        scope = {}
        exec(code, scope)
        out = scope["out"]
    finally:
        sys.argv = argv
    return json.loads(json.dumps(out))


def test_recorded_fairseq_ids(gpt2):
    enc = get_encoder(*map(str, gpt2))
    assert [enc.encode(t) for t in TEXTS] == GPT2_IDS
    assert [enc.decode(ids) for ids in GPT2_IDS] == TEXTS
    bpe = encoders.build_bpe(argparse.Namespace(bpe="gpt2", gpt2_encoder_json=str(gpt2[0]), gpt2_vocab_bpe=str(gpt2[1])))
    assert bpe.encode(TEXTS[0]) == "2597 366 5880 1857"
    assert bpe.decode("2597 366 5880 1857 <mask>") == "Hello world<mask>"
    assert [bpe.is_beginning_of_word(t) for t in ("1001", "50", "3")] == [True, False, False]


def test_recorded_fairseq_bytes_characters_space():
    assert encoders.build_bpe("bytes").encode(TEXTS[6]) == BYTES_6
    assert encoders.build_bpe("bytes").decode(BYTES_6) == TEXTS[6]
    assert encoders.build_bpe("characters").encode(TEXTS[3]) == CHARACTERS_3
    assert encoders.build_bpe("characters").decode(CHARACTERS_3) == TEXTS[3]
    assert encoders.build_tokenizer("space").encode(TEXTS[3]) == "multiple spaces and tabs "
    # a broken byte sequence decodes to the most characters it holds (fairseq's smart_byte_decode)
    assert encoders.build_bpe("bytes").decode("h Ã ▁ i") == "h i"


def test_get_encoder_reproduces_the_fixture_bpe(gpt2, peer_dir):
    """The fixture's valid.bpe (the fixture BPE through HF tokenizers) from fairseq's get_encoder path."""
    enc = get_encoder(*map(str, gpt2))
    raw = (peer_dir / "raw" / "valid.txt").read_text(encoding="utf-8").splitlines()
    want = (peer_dir / "bpe" / "valid.bpe").read_text(encoding="utf-8").splitlines()
    assert [" ".join(map(str, enc.encode(line.strip()))) for line in raw] == want


@pytest.mark.e2e_scripts
@pytest.mark.skipif(not (PEER_VENV / "bin" / "python").exists(),
                    reason=f"the real fairseq 0.12.2 venv is not at {PEER_VENV} (set FAIRSEQ_PEER_VENV)")
def test_side_by_side_with_real_fairseq(gpt2, peer_dir, tmp_path):
    """The same probe and examples/roberta/multiprocessing_bpe_encoder.py on both packages, same files."""
    python = str(PEER_VENV / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if subprocess.run([python, "-c", "import fairseq"], cwd=tmp_path, env=env, capture_output=True).returncode != 0:
        pytest.skip(f"fairseq does not import in {PEER_VENV}")
    real = subprocess.run([python, "-c", PROBE, str(gpt2[0]), str(gpt2[1]), json.dumps(TEXTS)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)
    assert real.returncode == 0, real.stderr[-2000:]
    theirs = json.loads(real.stdout.split("PROBE", 1)[1])
    assert _probe_here(*gpt2) == theirs
    script = peer_dir.parent.parent / "peer-tests" / "fairseq-0.12.2" / "examples" / "roberta"
    if not script.is_dir():
        return
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "roberta").mkdir()
    (tmp_path / "examples" / "roberta" / "multiprocessing_bpe_encoder.py").write_bytes(
        (script / "multiprocessing_bpe_encoder.py").read_bytes())
    lines = (peer_dir / "raw" / "valid.txt").read_text(encoding="utf-8").splitlines(keepends=True)[:200]
    (tmp_path / "in.txt").write_text("".join(lines) + "  odd\u2028line  \n", encoding="utf-8")
    outs = {}
    for name, exe in (("real", python), ("ours", sys.executable)):
        p = subprocess.run([exe, "-m", "examples.roberta.multiprocessing_bpe_encoder", "--encoder-json", str(gpt2[0]),
                            "--vocab-bpe", str(gpt2[1]), "--inputs", "in.txt", "--outputs", f"{name}.bpe",
                            "--keep-empty", "--workers", "2"], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=600)
        assert p.returncode == 0, p.stderr[-2000:]
        outs[name] = (tmp_path / f"{name}.bpe").read_bytes()
    assert outs["ours"] == outs["real"] and len(outs["ours"].splitlines()) == 201


# ---- the registries --------------------------------------------------------------------------------------------
def _parse(*argv):
    return options.parse_args_and_arch(options.get_training_parser(),
                                       ["D", "-a", "roberta_tiny", "--optimizer", "adam", "--batch-size", "8", *argv])


def test_bpe_flags_for_any_task(gpt2):
    """--bpe gpt2 adds --gpt2-encoder-json/--gpt2-vocab-bpe to a task that has none (fairseq's registry
    dataclass); without --bpe they are unknown there, as in fairseq."""
    args = _parse("--task", "sentence_prediction", "--criterion", "sentence_prediction", "--num-classes", "2",
                  "--bpe", "gpt2", "--gpt2-encoder-json", str(gpt2[0]), "--gpt2-vocab-bpe", str(gpt2[1]))
    assert encoders.build_bpe(args).encode("Hello world") == "2597 366 5880 1857"
    cfg = args_to_cfg(args)
    assert cfg["bpe"] == {"_name": "gpt2", "gpt2_encoder_json": str(gpt2[0]), "gpt2_vocab_bpe": str(gpt2[1])}
    assert cfg["tokenizer"] == {"_name": None}
    assert encoders.build_bpe(cfg["bpe"]).encode("Hello world") == "2597 366 5880 1857"
    with pytest.raises(SystemExit):
        _parse("--task", "sentence_prediction", "--num-classes", "2", "--gpt2-encoder-json", str(gpt2[0]))
    args = _parse("--tokenizer", "moses", "--source-lang", "fr")
    assert (args.tokenizer, args.source_lang, args.moses_no_escape) == ("moses", "fr", False)


def test_unknown_names_and_defaults_are_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"unknown --bpe 'fastbpe'; choose from: bytes, characters, gpt2, hf_byte_bpe, "
                                         r"sentencepiece"):
        encoders.build_bpe("fastbpe")
    assert encoders.build_bpe(argparse.Namespace(bpe=None)) is None and encoders.build_tokenizer(None) is None
    monkeypatch.setenv("PYTORCH_FAIRSEQ_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"--gpt2-encoder-json: https://dl\.fbaipublicfiles\.com/fairseq/"
                                                r"gpt2_bpe/encoder\.json is a download URL"):
        encoders.build_bpe("gpt2")  # fairseq's defaults, not in the cache
    with pytest.raises(ValueError, match="--sentencepiece-model"):
        encoders.build_bpe("sentencepiece")


def test_cached_path_reads_fairseqs_cache(gpt2, tmp_path, monkeypatch):
    """A URL resolves to fairseq's cache file: sha256(url), or sha256(url).sha256(etag); .json files are metadata."""
    monkeypatch.setenv("PYTORCH_FAIRSEQ_CACHE", str(tmp_path))
    stem = file_utils.url_to_filename(DEFAULT_ENCODER_JSON)
    (tmp_path / (stem + ".json")).write_text("{}")
    (tmp_path / (stem + "." + "e" * 64)).write_bytes(gpt2[0].read_bytes())
    (tmp_path / file_utils.url_to_filename(DEFAULT_VOCAB_BPE)).write_bytes(gpt2[1].read_bytes())
    assert file_utils.cached_path(DEFAULT_ENCODER_JSON) == str(tmp_path / (stem + "." + "e" * 64))
    assert encoders.build_bpe("gpt2").encode("Hello world") == "2597 366 5880 1857"
    assert file_utils.cached_path(str(gpt2[0])) == str(gpt2[0])
    with pytest.raises(FileNotFoundError, match="file not found"):
        file_utils.cached_path(str(tmp_path / "missing.json"))


def test_hf_byte_bpe_equals_gpt2(gpt2, tmp_path):
    """--bpe hf_byte_bpe on vocab.json + merges.txt (the same BPE) gives the GPT-2 ids."""
    args = argparse.Namespace(bpe="hf_byte_bpe", bpe_vocab=str(gpt2[0]), bpe_merges=str(gpt2[1]),
                              bpe_add_prefix_space=False)
    bpe = encoders.build_bpe(args)
    assert [bpe.encode(t) for t in TEXTS] == [" ".join(map(str, ids)) for ids in GPT2_IDS]
    assert bpe.decode("2597 366 5880 1857") == "Hello world"


def test_sentencepiece(peer_dir, tmp_path):
    """--bpe sentencepiece: the model's pieces joined by spaces, decoded back; word starts by ▁ (fairseq's)."""
    spm = pytest.importorskip("sentencepiece", reason="sentencepiece not installed (pip install -e '.[test]')")
    lines = (peer_dir / "raw" / "valid.txt").read_text(encoding="utf-8").splitlines()[:300]
    (tmp_path / "text.txt").write_text("\n".join(lines), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(tmp_path / "text.txt"), model_prefix=str(tmp_path / "sp"),
                                   vocab_size=300, num_threads=1, minloglevel=2)
    args = _parse("--bpe", "sentencepiece", "--sentencepiece-model", str(tmp_path / "sp.model"))
    bpe = encoders.build_bpe(args)
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "sp.model"))
    text = "Return True if the path is a file."
    assert bpe.encode(text) == " ".join(sp.encode(text, out_type=str))
    assert bpe.decode(bpe.encode(text)) == text
    pieces = bpe.encode(text).split()
    assert bpe.is_beginning_of_word(pieces[0]) and bpe.is_beginning_of_word("</s>")
    assert [bpe.is_beginning_of_word(p) for p in pieces] == [p.startswith("\u2581") for p in pieces]


def test_moses(monkeypatch):
    """--tokenizer moses through sacremoses; without it, an ImportError naming the package."""
    cfg = argparse.Namespace(tokenizer="moses", source_lang="en", target_lang="en", moses_no_dash_splits=False,
                             moses_no_escape=False)
    if _has("sacremoses"):
        tok = encoders.build_tokenizer(cfg)
        assert tok.encode("Hello, world's thing-a-ma-jig.") == "Hello , world &apos;s thing @-@ a @-@ ma @-@ jig ."
        assert tok.decode("Hello , world !") == "Hello, world!"
    monkeypatch.setitem(sys.modules, "sacremoses", None)
    with pytest.raises(ImportError, match="--tokenizer moses needs the sacremoses package: pip install sacremoses"):
        encoders.build_tokenizer(cfg)


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def test_register_bpe_plugin():
    """A plugin's own BPE (fairseq's register_bpe with a dataclass) is built from parsed args by name."""
    from dataclasses import dataclass, field

    from fairseq.dataclass import FairseqDataclass

    @dataclass
    class UpperConfig(FairseqDataclass):
        upper_marker: str = field(default="^", metadata={"help": "marker"})

    name = "test_upper_bpe"

    class Upper:
        def __init__(self, cfg):
            self.marker = cfg.upper_marker

        def encode(self, x):
            return self.marker + x.upper()

    encoders.register_bpe(name, dataclass=UpperConfig)(Upper)
    try:
        assert encoders.build_bpe(argparse.Namespace(bpe=name, upper_marker="#")).encode("ab") == "#AB"
        assert encoders.build_bpe({"_name": name}).encode("ab") == "^AB"
        with pytest.raises(ValueError, match="duplicate"):
            encoders.register_bpe(name)(object)
    finally:  # the table is process-wide: leave it as the other tests expect it
        del encoders.BPE_REGISTRY[name]
        del registry.REGISTRIES["bpe"].dataclasses[name]


def test_get_whole_word_mask(gpt2, peer_dir):
    """fairseq.data.encoders.utils.get_whole_word_mask: 1 where a symbol begins a word (the specials count as
    beginnings); None without --bpe."""
    from fairseq.data import Dictionary
    from fairseq.data.encoders.utils import get_whole_word_mask

    d = Dictionary.load(str(peer_dir / "data-bin" / "dict.txt"))
    d.add_symbol("<mask>")
    args = argparse.Namespace(bpe="gpt2", gpt2_encoder_json=str(gpt2[0]), gpt2_vocab_bpe=str(gpt2[1]))
    mask = get_whole_word_mask(args, d)
    bpe = encoders.build_bpe(args)
    assert mask.dtype.is_floating_point is False and len(mask) == len(d)
    assert mask[: d.nspecial].tolist() == [1] * d.nspecial
    assert mask[d.index("<mask>")] == 0  # as in fairseq: "<mask>" decodes to itself, which starts with no space
    assert [int(mask[i]) for i in range(d.nspecial, 60)] == \
        [int(bpe.decode(d[i]).startswith(" ")) for i in range(d.nspecial, 60)]
    assert get_whole_word_mask(argparse.Namespace(bpe=None), d) is None
