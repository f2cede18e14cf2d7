"""fairseq 0.12.2's examples/roberta, run as its READMEs print it, on this package (issue 31).

Our users keep a fairseq checkout's examples/ and install this package. Each test copies
../shared/peer-tests/fairseq-0.12.2/examples/roberta (the users' own MIT files, never a copy in this
repository) into a temporary user tree and runs the README's fenced code blocks, read from the README
itself, with only these edits, each asserted to apply (so a changed README fails here rather than passing
untested):
- sizes: a tiny model (1 layer, 32 wide) through the same flags/overrides, a few updates, small batches,
  `--workers 2` for `--workers 60` (also in the copied .sh scripts), and data made here in the dataset's
  format (the READMEs download WikiText, GLUE, IMDB, RACE, CommonsenseQA);
- paths: /path/to/... placeholders, and the GPT-2 files given locally as a user offline would: the
  `wget` lines of the READMEs are left out and the files put where they write them; the .sh scripts run
  with a `wget` that fails at once (as offline), and the hub finds fairseq's default GPT-2 files in a
  fairseq cache folder ($PYTORCH_FAIRSEQ_CACHE), where real fairseq's hub downloads them;
- devices: CPU (`roberta.cuda()` stays on the CPU with a warning; --fp16 trains in fp32 there).
The GPT-2 files are a byte-level BPE in GPT-2's format made from the fixture tokenizer.json (what
fairseq-bpe exports); the dictionary is the fixture's dict.txt. These run end to end, so they are slow:
about 60 processes, most of whose time is importing torch; after the pretraining README, the other READMEs
run two at a time (the `readmes` fixture).
"""
import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import SHARED

ROBERTA = SHARED / "peer-tests" / "fairseq-0.12.2" / "examples" / "roberta"
PEER = SHARED / "fixtures" / "fairseq-peer"
TINY = {"encoder_layers": 1, "encoder_embed_dim": 32, "encoder_ffn_embed_dim": 64, "encoder_attention_heads": 2}
TINY_FLAGS = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in TINY.items())
TINY_OVERRIDES = " ".join(f"+model.{k}={v}" for k, v in TINY.items())
TIMEOUT = 900

pytestmark = [pytest.mark.slow, pytest.mark.e2e_scripts,
              pytest.mark.skipif(not (ROBERTA.is_dir() and PEER.is_dir()),
                                 reason=f"fairseq's examples/roberta or the peer fixtures not found under {SHARED} "
                                        "(set FAIRSEQ_SCTD_SHARED)")]


def code_blocks(readme: Path, lang: str) -> list:
    """The README's fenced code blocks of one language (```bash, ```python; "" for a bare ```), in order."""
    blocks, current = [], None
    for line in readme.read_text(encoding="utf-8").splitlines(keepends=True):
        if line.startswith("```"):
            if current is None:
                current = (line[3:].strip(), [])
            else:
                blocks.append(current)
                current = None
        elif current is not None:
            current[1].append(line)
    return ["".join(body) for kind, body in blocks if kind == lang]


def edit(text: str, *pairs) -> str:
    """Replace each (old, new); every old must be in the text."""
    for old, new in pairs:
        assert old in text, f"the README no longer has {old!r}: update this test"
        text = text.replace(old, new)
    return text


def offline(text: str) -> str:
    """The GPT-2 files are given locally (no wget), and 2 workers on this machine instead of 60 or 10."""
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("wget "))
    return re.sub(r"--workers \d+", "--workers 2", text)


def _env(tree: Path) -> dict:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(tree / "offline-bin"), str(Path(sys.executable).parent), env["PATH"]])
    env["PYTORCH_FAIRSEQ_CACHE"] = str(tree / "fairseq-cache")
    env["OMP_NUM_THREADS"] = "1"
    env.pop("PYTHONPATH", None)  # the installed package, as the user has it
    return env


def run(tree: Path, kind: str, code: str, cwd=None) -> str:
    """Run a bash script or python code in the user tree (or cwd); its combined output (fails with its tail)."""
    argv = ["bash", "-e", "-o", "pipefail", "-c", code] if kind == "bash" else [sys.executable, "-c", code]
    p = subprocess.run(argv, cwd=cwd or tree, env=_env(tree), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=TIMEOUT)
    assert p.returncode == 0, f"{kind} failed ({p.returncode}):\n{code}\n--- output (tail) ---\n{p.stdout[-4000:]}"
    return p.stdout


def gpt2_files(folder: Path) -> None:
    """encoder.json + vocab.bpe (GPT-2's format) of the fixture's byte-level BPE, and the fixture dict.txt."""
    from fairseq.data.bpe import export_gpt2_files, load_tokenizer

    export_gpt2_files(load_tokenizer(tokenizer_json=str(PEER / "tokenizer.json")), str(folder))
    shutil.copy(PEER / "data-bin" / "dict.txt", folder / "dict.txt")


def user_tree(root: Path) -> Path:
    """A fairseq checkout's examples/roberta, as the user has it (scripts sized for 2 workers), a wget that
    fails at once (offline), and fairseq's GPT-2 files in a fairseq cache folder."""
    from fairseq.data.encoders.gpt2_bpe import DEFAULT_ENCODER_JSON, DEFAULT_VOCAB_BPE
    from fairseq.file_utils import url_to_filename

    tree = root / "fairseq"
    shutil.copytree(ROBERTA, tree / "examples" / "roberta")
    for script in (tree / "examples" / "roberta").glob("*.sh"):
        script.write_text(re.sub(r"--workers \d+", "--workers 2", script.read_text()))
    (tree / "offline-bin").mkdir()
    (tree / "offline-bin" / "wget").write_text('#!/bin/sh\necho "wget: no network ($*)" >&2\nexit 4\n')
    (tree / "offline-bin" / "wget").chmod(0o755)
    gpt2_files(tree)
    cache = tree / "fairseq-cache"
    cache.mkdir()
    shutil.copy(tree / "encoder.json", cache / url_to_filename(DEFAULT_ENCODER_JSON))
    shutil.copy(tree / "vocab.bpe", cache / url_to_filename(DEFAULT_VOCAB_BPE))
    return tree


def text_lines(n: int, start: int = 0) -> list:
    lines = [ln.strip() for ln in (PEER / "raw" / "valid.txt").read_text(encoding="utf-8").splitlines() if ln.strip()]
    return [lines[(start + i) % len(lines)] for i in range(n)]


# ---- README.pretraining.md ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """README.pretraining.md, steps 1-3, on 300 lines of the fixture corpus: (tree, outputs, model.pt)."""
    tree = user_tree(tmp_path_factory.mktemp("pretraining"))
    raw = tree / "wikitext-103-raw"
    raw.mkdir()
    train = (PEER / "raw" / "train.txt").read_text(encoding="utf-8").splitlines(keepends=True)
    valid = (PEER / "raw" / "valid.txt").read_text(encoding="utf-8").splitlines(keepends=True)
    for split, lines in (("train", train[:300]), ("valid", valid[:60]), ("test", valid[-60:])):
        (raw / f"wiki.{split}.raw").write_text("".join(lines), encoding="utf-8")
    (tree / "gpt2_bpe").mkdir()
    for name in ("encoder.json", "vocab.bpe", "dict.txt"):
        shutil.copy(tree / name, tree / "gpt2_bpe" / name)
    readme = ROBERTA / "README.pretraining.md"
    bash = code_blocks(readme, "bash")
    assert len(bash) == 4 and "wikitext-103-raw-v1.zip" in bash[0]  # [0] downloads WikiText: made above
    out = [run(tree, "bash", offline(bash[1])), run(tree, "bash", offline(bash[2]))]
    out.append(run(tree, "bash", edit(bash[3], ("task.data=$DATA_DIR", f"task.data=$DATA_DIR {TINY_OVERRIDES} "
                                                "optimization.max_update=3 optimization.update_freq=[1] "
                                                "dataset.batch_size=4 lr_scheduler.warmup_updates=1"))))
    python = code_blocks(readme, "python")
    assert len(python) == 1
    out.append(run(tree, "python", "import torch\n"  # the README's snippet uses torch without importing it
                   + edit(python[0], ("'path/to/data'", "'data-bin/wikitext-103'"))
                   + "print('loaded', type(roberta.model).__name__)\n"))
    model = tree / "roberta.tiny" / "model.pt"
    model.parent.mkdir()
    shutil.copy(tree / "checkpoints" / "checkpoint_best.pt", model)
    return tree, out, model


def test_pretraining_readme(pretrained):
    tree, out, _ = pretrained
    # step 1: the BPE encoder's output is the fixture's (made by the same BPE through HF tokenizers)
    want = (PEER / "bpe" / "train.bpe").read_text(encoding="utf-8").splitlines()[:300]
    assert (tree / "wikitext-103-raw" / "wiki.train.bpe").read_text(encoding="utf-8").splitlines() == want
    assert sorted(p.name for p in (tree / "data-bin" / "wikitext-103").glob("*.bin")) == \
        ["test.bin", "train.bin", "valid.bin"]
    # step 2: `-m` (hydra's multirun) runs the one job in place: checkpoints/ where the command ran
    assert '"train_num_updates": "3"' in out[2] and "done training" in out[2]
    assert not (tree / "multirun").exists()
    assert "loaded RobertaModel" in out[3]


# ---- README.glue.md --------------------------------------------------------------------------------------------
def _glue_rte(folder: Path) -> None:
    """glue_data/RTE/{train,dev,test}.tsv in GLUE's layout (header; index, sentence1, sentence2[, label])."""
    folder.mkdir(parents=True)
    for split, n, start in (("train", 16, 0), ("dev", 8, 100), ("test", 4, 200)):
        a, b = text_lines(n, start), text_lines(n, start + 7)
        rows = ["index\tsentence1\tsentence2" + ("\tlabel" if split != "test" else "")]
        for i in range(n):
            label = "" if split == "test" else "\t" + ("entailment" if i % 2 else "not_entailment")
            rows.append(f"{i}\t{a[i][:150]}\t{b[i][:100]}{label}")
        (folder / f"{split}.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")


def glue_readme(pretrained, tmp_path):
    tree = user_tree(tmp_path)
    _glue_rte(tree / "glue_data" / "RTE")
    readme = ROBERTA / "README.glue.md"
    bash = code_blocks(readme, "bash")
    assert len(bash) == 3 and "download_glue_data.py" in bash[0]  # [0] downloads GLUE: made above
    run(tree, "bash", edit(bash[1], ("<glue_task_name>", "RTE")))
    for kind in ("input0", "input1", "label"):
        assert (tree / "RTE-bin" / kind / "valid.bin").is_file()
    out = run(tree, "bash", edit(bash[2], ("/path/to/roberta/model.pt", str(pretrained[2])),
                                 ("checkpoint.restore_file=$ROBERTA_PATH",
                                  f"checkpoint.restore_file=$ROBERTA_PATH {TINY_OVERRIDES} optimization.max_update=4 "
                                  "dataset.batch_size=8 lr_scheduler.warmup_updates=1")))
    assert "valid_accuracy" in out and (tree / "checkpoints" / "checkpoint_best.pt").is_file()
    python = code_blocks(readme, "python")
    assert len(python) == 1
    out = run(tree, "python", python[0])
    accuracy = float(re.search(r"\| Accuracy:\s+([0-9.]+)", out).group(1))
    assert 0.0 <= accuracy <= 1.0


# ---- README.custom_classification.md --------------------------------------------------------------------------
def _imdb(folder: Path) -> None:
    """aclImdb/{train,test}/{pos,neg}/*.txt: one review per file, the positive ones say best, the others worst."""
    words = ["movie", "film", "story", "cast", "plot", "show", "ending", "script"]
    for split, n in (("train", 24), ("test", 6)):
        for label, adjective in (("pos", "Best"), ("neg", "Worst")):
            (folder / split / label).mkdir(parents=True)
            for i in range(n):
                text = f"{adjective} {words[i % len(words)]} {'this year' if label == 'pos' else 'ever'}"
                (folder / split / label / f"{i}_{split}.txt").write_text(text)  # no newline at the end, as in IMDB


def custom_classification_readme(pretrained, tmp_path):
    tree = user_tree(tmp_path)
    _imdb(tree / "aclImdb")
    readme = ROBERTA / "README.custom_classification.md"
    bash, python = code_blocks(readme, "bash"), code_blocks(readme, "python")
    assert len(bash) == 4 and "aclImdb_v1.tar.gz" in bash[0]  # [0] downloads IMDB: made above
    assert len(python) == 3
    run(tree, "python", python[0])  # step 2, its own argparse defaults (--datadir aclImdb)
    run(tree, "bash", offline(bash[1]))
    run(tree, "bash", offline(bash[2]))
    train = edit(bash[3], ("TOTAL_NUM_UPDATES=7812", "TOTAL_NUM_UPDATES=40"),
                 ("WARMUP_UPDATES=469", "WARMUP_UPDATES=2"),
                 ("LR=1e-05", "LR=3e-03"),  # a 1-layer model from 3 pretraining updates learns in 40 updates
                 ("ROBERTA_PATH=/path/to/roberta.large/model.pt", f"ROBERTA_PATH={pretrained[2]}"),
                 ("--arch roberta_large", f"--arch roberta_large {TINY_FLAGS}"),
                 ("--update-freq 4", "--update-freq 1"))
    out = run(tree, "bash", train)
    assert "best_accuracy" in out
    run(tree, "python", python[1] + python[2])  # step 6: load, then its two asserts on the predictions


# ---- README.race.md --------------------------------------------------------------------------------------------
def _race(folder: Path) -> None:
    """RACE's layout: <split>/<middle|high>/<n>.txt, each a JSON article with questions, options, answers."""
    passages, i = text_lines(12, 30), 0
    for split in ("train", "dev", "test"):
        for level in ("middle", "high"):
            (folder / split / level).mkdir(parents=True)
            for k in range(2 if split == "train" else 1):
                i += 1
                answers = ["B", "D"] if i % 2 else ["A", "C"]
                doc = {"article": passages[i][:300], "id": f"{split}/{level}/{k}.txt",
                       "questions": ["What is it about?", "The text _ this."],
                       "options": [["types", "files", "names", "lines"], ["says", "shows", "lists", "returns"]],
                       "answers": answers}
                (folder / split / level / f"{k}.txt").write_text(json.dumps(doc))


def race_readme(pretrained, tmp_path):
    tree = user_tree(tmp_path)
    _race(tree / "RACE")
    readme = ROBERTA / "README.race.md"
    bash = code_blocks(readme, "bash")
    assert len(bash) == 2
    run(tree, "bash", edit(bash[0], ("<input-dir>", "RACE"), ("<extracted-data-dir>", "RACE-extracted"),
                           ("<output-dir>", "RACE-bin")))
    assert (tree / "RACE-bin" / "label" / "test1.label").is_file()
    out = run(tree, "bash", edit(bash[1], ("MAX_EPOCH=5", "MAX_EPOCH=2"), ("UPDATE_FREQ=8", "UPDATE_FREQ=2"),
                                 ("DATA_DIR=/path/to/race-output-dir", "DATA_DIR=RACE-bin"),
                                 ("ROBERTA_PATH=/path/to/roberta/model.pt", f"ROBERTA_PATH={pretrained[2]}"),
                                 ("--arch roberta_large", f"--arch roberta_large {TINY_FLAGS}")))
    assert "valid_accuracy" in out
    # step 4 is a plain ``` block: the evaluation, on test (middle) and test1 (high)
    evaluation = code_blocks(readme, "")
    assert len(evaluation) == 1
    for split in ("test", "test1"):  # one article of 2 questions each
        out = run(tree, "bash", edit(evaluation[0], ("DATA_DIR=/path/to/race-output-dir", "DATA_DIR=RACE-bin"),
                                     ("MODEL_PATH=/path/to/checkpoint_best.pt", "MODEL_PATH=checkpoints/checkpoint_best.pt"),
                                     ("TEST_SPLIT=test ", f"TEST_SPLIT={split} ")))
        accuracy = re.search(rf"valid on '{split}' subset \|.* accuracy ([0-9.]+)", out)
        assert accuracy, out[-2000:]
        preds = [line.split("\t") for line in (tree / "preds.tsv").read_text().splitlines()]
        labels = (tree / "RACE-bin" / "label" / f"{split}.label").read_text().split()
        assert len(preds) == 2 and all(len(p) == 3 for p in preds)  # id, prediction, label
        assert sorted(int(p[0]) for p in preds) == [0, 1]
        assert all(p[2] == labels[int(p[0])] for p in preds)
        correct = sum(p[1] == p[2] for p in preds)
        assert float(accuracy.group(1)) == pytest.approx(100.0 * correct / len(preds), abs=0.05)


# ---- commonsense_qa/README.md (a --user-dir plugin) ------------------------------------------------------------
def _cqa(folder: Path) -> None:
    """data/CommonsenseQA/{train,valid}.jsonl in CommonsenseQA's format (5 choices, answerKey) and dict.txt."""
    folder.mkdir(parents=True)
    stems = text_lines(12, 50)
    for split, start, n in (("train", 0, 8), ("valid", 8, 4)):
        with open(folder / f"{split}.jsonl", "w", encoding="utf-8") as f:
            for i in range(start, start + n):
                choices = [{"label": c, "text": w} for c, w in zip("ABCDE", ["file", "path", "name", "line", "type"])]
                f.write(json.dumps({"answerKey": "ABCDE"[i % 5], "id": f"q{i}",
                                    "question": {"stem": stems[i][:120], "choices": choices}}) + "\n")


def commonsense_qa_readme(pretrained, tmp_path):
    tree = user_tree(tmp_path)
    readme = ROBERTA / "commonsense_qa" / "README.md"
    bash, python = code_blocks(readme, "bash"), code_blocks(readme, "python")
    assert len(bash) == 2 and "download_cqa_data.sh" in bash[0]  # [0] downloads CommonsenseQA: made here
    _cqa(tree / "data" / "CommonsenseQA")
    shutil.copy(tree / "dict.txt", tree / "data" / "CommonsenseQA" / "dict.txt")
    out = run(tree, "bash", edit(bash[1], ("MAX_UPDATES=3000", "MAX_UPDATES=4"), ("WARMUP_UPDATES=150", "WARMUP_UPDATES=1"),
                                 ("MAX_SENTENCES=16", "MAX_SENTENCES=4"),
                                 ("ROBERTA_PATH=/path/to/roberta/model.pt", f"ROBERTA_PATH={pretrained[2]}"),
                                 ("FAIRSEQ_PATH=/path/to/fairseq", "FAIRSEQ_PATH=$PWD"),
                                 # the GPT-2 files given locally (fairseq's defaults are their URLs)
                                 ("--bpe gpt2", "--bpe gpt2 --gpt2-encoder-json encoder.json --gpt2-vocab-bpe vocab.bpe"),
                                 ("--arch roberta_large", f"--arch roberta_large {TINY_FLAGS}")))
    assert "valid_accuracy" in out and (tree / "checkpoints" / "checkpoint_best.pt").is_file()
    assert len(python) == 1
    out = run(tree, "python", python[0])
    assert re.search(r"^Accuracy: [0-9.]+$", out, flags=re.M), out[-2000:]


# ---- wsc/README.md: WSC needs spaCy's en_core_web_lg; WinoGrande trains ---------------------------------------------
def wsc_readme(pretrained, tmp_path):
    """The wsc plugin's task and criterion import and register (wsc, winogrande); WSC's data loading needs
    spaCy's en_core_web_lg, which cannot be installed here; the WinoGrande command of the same README trains
    (its criterion builds `--bpe gpt2` from fairseq's default files: the fairseq cache)."""
    tree = user_tree(tmp_path)
    out = run(tree, "python", "from examples.roberta import wsc\nfrom fairseq import registry\n"
                              "for kind in ('task', 'criterion'):\n"
                              "    print(kind, [registry.lookup(kind, n).__name__ for n in ('wsc', 'winogrande')])\n"
                              "try:\n    wsc.wsc_utils.get_spacy_nlp()  # what WSC's data loading calls first\n"
                              "except ImportError as e:\n    print('missing', e.name)\n")
    assert "task ['WSCTask', 'WinograndeTask']" in out and "criterion ['WSCCriterion', 'WinograndeCriterion']" in out
    assert "missing en_core_web_lg" in out
    readme = ROBERTA / "wsc" / "README.md"
    bash = code_blocks(readme, "bash")
    assert len(bash) == 3 and "--task winogrande" in bash[2]
    data = tree / "winogrande_1.0"
    data.mkdir()
    shutil.copy(tree / "dict.txt", data / "dict.txt")
    for split, n in (("train", 8), ("val", 4)):
        with open(data / f"{split}.jsonl", "w") as f:
            for i in range(n):
                f.write(json.dumps({"sentence": f"The trophy does not fit in the case because the _ is too "
                                                f"{'large' if i % 2 else 'small'}.", "option1": "trophy",
                                    "option2": "case", "answer": "1" if i % 2 else "2"}) + "\n")
    # the block starts with `cd fairseq`: it runs from the folder above the checkout
    out = run(tree, "bash", cwd=tree.parent, code=edit(bash[2], ("TOTAL_NUM_UPDATES=23750", "TOTAL_NUM_UPDATES=4"),
                                        ("WARMUP_UPDATES=2375", "WARMUP_UPDATES=1"), ("MAX_SENTENCES=32", "MAX_SENTENCES=4"),
                                        ("ROBERTA_PATH=/path/to/roberta/model.pt", f"ROBERTA_PATH={pretrained[2]}"),
                                        ("FAIRSEQ_PATH=/path/to/fairseq", f"FAIRSEQ_PATH={tree}"),
                                        ("--arch roberta_large", f"--arch roberta_large {TINY_FLAGS}")))
    assert re.search(r"\| val_accuracy [0-9.]+ \|", out), out[-2000:]  # the criterion's own (old-API) aggregate
    assert (tree / "checkpoints" / "checkpoint_best.pt").is_file()


# ---- the README flows, two at a time ------------------------------------------------------------------------------
FLOWS = {"race": race_readme, "glue": glue_readme, "custom_classification": custom_classification_readme,
         "commonsense_qa": commonsense_qa_readme, "wsc": wsc_readme}  # longest first


@pytest.fixture(scope="module")
def readmes(request, pretrained, tmp_path_factory):
    """The flows of the tests this session runs, started together on two threads: each flow is a chain of
    processes using one core, so on a 2-core machine two at a time halve the module's wall time. Each
    test then reports its own flow's result (or its failure)."""
    wanted = [name for name in FLOWS if any(item.name == f"test_{name}_readme" for item in request.session.items)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield {name: pool.submit(FLOWS[name], pretrained, tmp_path_factory.mktemp(name)) for name in wanted}


def test_race_readme(readmes):
    readmes["race"].result()


def test_glue_readme(readmes):
    readmes["glue"].result()


def test_custom_classification_readme(readmes):
    readmes["custom_classification"].result()


def test_commonsense_qa_readme(readmes):
    readmes["commonsense_qa"].result()


def test_wsc_readme(readmes):
    """wsc/README.md as far as it goes without spaCy's en_core_web_lg (see wsc_readme)."""
    readmes["wsc"].result()
