"""The README's 5-minute tour runs as printed: its bash block (BPE, binarize, pretrain with token dropping,
validate, GLUE fine-tuning, HF export) in a shell, then its python block on what the shell left behind.
Only the run lengths are cut (flags appended to the training lines: later flags win) and the corpus is small."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
SHORTER_PRETRAINING = " --max-update 6 --total-num-update 6 --warmup-updates 2"
SHORTER_FINETUNING = " --max-update 2"


def tour_blocks():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^## A 5-minute tour\n(.*?)(?=^## )", readme, flags=re.M | re.S).group(1)
    bash = re.findall(r"^```bash\n(.*?)^```$", section, flags=re.M | re.S)
    python = re.findall(r"^```python\n(.*?)^```$", section, flags=re.M | re.S)
    assert len(bash) == 1 and len(python) == 1, "the tour has one bash and one python block"
    return bash[0], python[0]


def shortened(script):
    """The tour with run lengths cut: each training command gets flags appended to its last line."""
    lines, out, command = script.splitlines(), [], ""
    for line in lines:
        command += line
        if line.endswith("\\"):
            out.append(line)
            continue
        if re.match(r"^fairseq-train ", command):
            line += SHORTER_PRETRAINING
        elif "examples/sctd/glue.sh" in command:
            line = line.replace("MAX_EPOCH=3", "MAX_EPOCH=1") + SHORTER_FINETUNING
        out.append(line)
        command = ""
    ends = [next(s for s in (SHORTER_PRETRAINING, SHORTER_FINETUNING, "") if line.endswith(s)) for line in out]
    assert ends.count(SHORTER_PRETRAINING) == 1 and ends.count(SHORTER_FINETUNING) == 1, out
    return "\n".join(out) + "\n"


needs_shared = pytest.mark.skipif(
    not (SHARED / "tinyshakespeare" / "input.txt").is_file() or not (SHARED / "glue" / "RTE").is_dir(),
    reason="needs ../shared/data (tinyshakespeare, glue/RTE)")


@pytest.fixture(scope="module")
def tour(tmp_path_factory):
    """The tour's bash block, run once in a fresh folder: (that folder, the output of its commands)."""
    bash, _ = tour_blocks()
    tmp_path = tmp_path_factory.mktemp("tour")
    text = (SHARED / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "train.txt").write_text(text[:60000], encoding="utf-8")
    (tmp_path / "corpus" / "valid.txt").write_text(text[-8000:], encoding="utf-8")
    (tmp_path / "glue").mkdir()
    os.symlink(SHARED / "glue" / "RTE", tmp_path / "glue" / "RTE")
    os.symlink(REPO / "examples", tmp_path / "examples")  # the tour runs from a clone's root
    (tmp_path / "tour.sh").write_text("set -euo pipefail\n" + shortened(bash))
    run = subprocess.run(["bash", "tour.sh"], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=600)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-4000:]
    return tmp_path, log


ENV = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           PYTHON=sys.executable, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def run_python(code: str, name: str, scope=None) -> dict:
    """exec a documented block with one thread (a tiny model on busy cores); its variables (in `scope`)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    scope = {} if scope is None else scope
    try:
        exec(compile(code, name, "exec"), scope)
    finally:
        torch.set_num_threads(n)
    return scope


@pytest.mark.e2e_scripts
@needs_shared
def test_readme_tour_runs_as_printed(tour, monkeypatch, capsys):
    folder, log = tour
    assert "train_drop_rate 0.5" in log and "train_sctd_kl_local" in log, "no token-dropping or ScTD updates"
    assert "valid on 'valid' subset" in log
    assert re.search(r"RTE best dev: loss=[\d.]+, accuracy=[\d.]+ \(majority class 52\.7\)", log), log[-2000:]
    assert (folder / "checkpoints" / "checkpoint_best.pt").is_file()
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in (folder / "hf-out").iterdir()}

    monkeypatch.chdir(folder)
    capsys.readouterr()
    run_python(tour_blocks()[1], "README.md tour python block")
    printed = capsys.readouterr().out
    assert "The capital of France is" in printed and "<mask>" not in printed


def doc_blocks(path: Path):
    """(indented command lines, ```python blocks) of a docs page, in order."""
    text = path.read_text(encoding="utf-8")
    commands = re.findall(r"^    (fairseq-[a-z-]+ .*?)(?:\s+#.*)?$", text, flags=re.M)
    return commands, re.findall(r"^```python\n(.*?)^```$", text, flags=re.M | re.S)


@pytest.mark.e2e_scripts
@needs_shared
def test_docs_blocks_run_on_the_tours_model(tour, monkeypatch, capsys):
    """docs/hf.md's commands and block, then docs/python-api.md's hub and data blocks, as printed, in the tour's
    folder on what its commands made: what a reader who has just run the tour would type next."""
    from test_readme_python import doc_parts

    folder, log = tour
    monkeypatch.chdir(folder)
    commands, hf_blocks = doc_blocks(REPO / "docs" / "hf.md")
    assert [c.split()[0] for c in commands] == ["fairseq-export-hf", "fairseq-import-hf"]
    for command in commands:
        run = subprocess.run(command, shell=True, env=ENV, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, f"{command}\n{run.stdout[-2000:]}{run.stderr[-2000:]}"
    hub_blocks, _, data_blocks = doc_parts()
    assert len(hf_blocks) == 1 and len(hub_blocks) == 3 and len(data_blocks) == 3
    capsys.readouterr()
    hf = run_python(hf_blocks[0], "docs/hf.md python block")
    printed = capsys.readouterr().out
    assert "The capital of France is" in printed and len(hf["fill_mask"]("a <mask>.", top_k=3)) == 3

    scope = run_python(hub_blocks[0], "docs/python-api.md hub block 1")  # the page's blocks share one session
    # the page's rule: exact for text whose BPE pieces are all in dict.txt, <unk> for a piece that is not
    roberta, d = scope["roberta"], scope["roberta"].task.source_dictionary
    pieces = roberta.bpe.encode("Hello world!").split()
    assert (roberta.decode(scope["tokens"]) == "Hello world!") == all(p in d.indices for p in pieces)
    held = re.search(r"dict.txt holds (\d+) of the BPE's (\d+) pieces", (folder / "data-bin" / "preprocess.log").read_text())
    vocab = roberta.bpe.tok.get_vocab()
    missing = [piece for piece, i in vocab.items() if str(i) not in d.indices]
    assert int(held.group(1)) + len(missing) == int(held.group(2)) == len(vocab) and missing
    alone = [text for m in missing for text in [roberta.bpe.tok.decode([vocab[m]])]
             if roberta.bpe.encode(text) == str(vocab[m])]  # texts that are one missing piece
    assert alone and all(roberta.decode(roberta.encode(text)) == "<unk>" for text in alone[:20])

    glue = run_python(hub_blocks[1], "docs/python-api.md GLUE block", scope)
    best = re.search(r"RTE best dev: loss=[\d.]+, accuracy=([\d.]+)", log)
    assert glue["nsamples"] == 277 and round(100.0 * glue["ncorrect"] / glue["nsamples"], 1) == float(best.group(1))

    capsys.readouterr()
    run_python(hub_blocks[2], "docs/python-api.md imported-HF block", scope)
    assert "The capital of France is" in capsys.readouterr().out
    scope = {}
    for i, block in enumerate(data_blocks):  # one scope: the later blocks use the first's `d` and `line`
        run_python(block, f"docs/python-api.md data block {i + 1}", scope)
    assert scope["line"] and len(scope["dataset"]) > 0 and len(scope["batches"]) > 0
