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


@pytest.mark.skipif(not (SHARED / "tinyshakespeare" / "input.txt").is_file() or not (SHARED / "glue" / "RTE").is_dir(),
                    reason="needs ../shared/data (tinyshakespeare, glue/RTE)")
def test_readme_tour_runs_as_printed(tmp_path, monkeypatch, capsys):
    bash, python = tour_blocks()
    text = (SHARED / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "train.txt").write_text(text[:60000], encoding="utf-8")
    (tmp_path / "corpus" / "valid.txt").write_text(text[-8000:], encoding="utf-8")
    (tmp_path / "glue").mkdir()
    os.symlink(SHARED / "glue" / "RTE", tmp_path / "glue" / "RTE")
    os.symlink(REPO / "examples", tmp_path / "examples")  # the tour runs from a clone's root
    (tmp_path / "tour.sh").write_text("set -euo pipefail\n" + shortened(bash))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               PYTHON=sys.executable, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    run = subprocess.run(["bash", "tour.sh"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-4000:]
    assert "train_drop_rate 0.5" in log and "train_sctd_kl_local" in log, "no token-dropping or ScTD updates"
    assert "valid on 'valid' subset" in log
    assert re.search(r"RTE best dev: loss=[\d.]+, accuracy=[\d.]+", log), log[-2000:]
    assert (tmp_path / "checkpoints" / "checkpoint_best.pt").is_file()
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in (tmp_path / "hf-out").iterdir()}

    monkeypatch.chdir(tmp_path)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        capsys.readouterr()
        exec(compile(python, "README.md tour python block", "exec"), {})
    finally:
        torch.set_num_threads(n)
    printed = capsys.readouterr().out
    assert "The capital of France is" in printed and "<mask>" not in printed
