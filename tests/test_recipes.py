"""The shell recipes and the YAML recipes describe the same training run (equal Namespaces)."""
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from fairseq import options
from fairseq_cli.hydra_train import resolve_config

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "examples" / "sctd"
CONFIG_DIR = RECIPES / "config"
DATA, SAVE = "/data/bin", "/save/dir"

# The paper's command as written in SPEC section 1 (only the --arch value differs per recipe).
PAPER_FLAGS = """
    --train-subset train --valid-subset valid --skip-invalid-size-inputs-valid-test
    --memory-efficient-fp16 --fp16-init-scale 8
    --arch ARCH --task masked_lm --sample-break-mode "complete"
    --batch-size 8 --tokens-per-sample 512
    --save-interval 1 --save-interval-updates 10000 --keep-interval-updates 25 --no-epoch-checkpoints
    --optimizer adam --adam-betas "(0.9, 0.999)" --adam-eps 1e-06 --weight-decay 0.01 --clip-norm 0.0
    --lr 2e-4 --lr-scheduler polynomial_decay --warmup-updates 25000
    --dropout 0.1 --token-drop 0.5 --max-positions 512 --attention-dropout 0.1
    --update-freq 2 --ddp-backend=legacy_ddp
    --total-num-update 250000 --max-update 250000 --max-epoch 40
    --save-dir SAVE_DIR --log-format json --log-interval 100
"""


def fairseq_train_argv(script: Path, env: dict) -> list:
    """The argv of the `fairseq-train` command in a shell script, with $VARS substituted."""
    text = script.read_text()
    match = re.search(r"^fairseq-train (.*?)(?: 2>&1.*)?$", text.replace("\\\n", " "), re.M)
    assert match, f"no fairseq-train command in {script}"
    command = match.group(1).replace('"$@"', "")  # the user's extra flags: none here
    command = re.sub(r"\$\{?(\w+)\}?", lambda m: env[m.group(1)], command)
    return shlex.split(command)


def _parse(argv):
    return options.parse_args_and_arch(options.get_training_parser(), argv)


@pytest.mark.parametrize("size", ["base", "large"])
def test_shell_and_yaml_recipes_resolve_to_the_same_namespace(size):
    shell = vars(_parse(fairseq_train_argv(RECIPES / "pretrain.sh", {"DATA_DIR": DATA, "SAVE_DIR": SAVE, "SIZE": size})))
    yaml = vars(resolve_config(CONFIG_DIR, f"pretrain_{size}", [f"task.data={DATA}", f"checkpoint.save_dir={SAVE}"]))
    assert shell.keys() == yaml.keys()
    assert {k: v for k, v in shell.items() if yaml[k] != v} == {}
    assert shell["arch"] == f"roberta_{size}" and shell["token_drop"] == 0.5
    assert shell["data"] == DATA and shell["save_dir"] == SAVE


@pytest.mark.parametrize("size", ["base", "large"])
def test_shell_recipe_is_the_papers_command(size):
    """Exactly the flags of SPEC section 1 (arch aside), so the recipe cannot drift from the paper."""
    paper = [DATA] + shlex.split(PAPER_FLAGS.replace("ARCH", f"roberta_{size}").replace("SAVE_DIR", SAVE))
    script = fairseq_train_argv(RECIPES / "pretrain.sh", {"DATA_DIR": DATA, "SAVE_DIR": SAVE, "SIZE": size})
    assert script == paper
    assert vars(_parse(script)) == vars(_parse(paper))


def test_overrides_change_the_resolved_namespace():
    args = resolve_config(CONFIG_DIR, "pretrain_base", [
        f"task.data={DATA}", "optimization.max_update=10", "optimization.lr=[1e-4]",
        "optimizer.adam_betas=[0.9,0.98]", "token_drop.sctd_interval=0", "~token_drop.token_drop"])
    assert args.max_update == 10 and args.lr == [1e-4]
    assert args.total_num_update == 10  # ${optimization.max_update} follows the override
    assert args.adam_betas == "(0.9, 0.98)" and args.sctd_interval == 0 and args.token_drop == 0.0


def test_scripts_are_valid_bash():
    for name in ("pretrain.sh", "quickstart.sh"):
        subprocess.run(["bash", "-n", str(RECIPES / name)], check=True)


def test_readme_names_every_recipe():
    readme = (RECIPES / "README.md").read_text()
    for name in ("pretrain.sh", "quickstart.sh", "pretrain_base.yaml",
                 "pretrain_large.yaml", "fairseq-hydra-train", "fairseq-sctd-quickstart", "--token-drop",
                 "--sctd-interval", "--sctd-weight"):
        assert name in readme, name


# --- recipes that connect (issue 24): extra flags, Ctrl-C through tee, continue_pretraining's positions ---

FAKE_TRAIN = """#!/usr/bin/env bash
echo "fake fairseq-train args: $*"
trap 'echo "saving checkpoint_last.pt after the interrupt"; sleep 0.3; echo "interrupted by signal 2"; exit 130' INT
echo "fake fairseq-train started"
while true; do sleep 0.05; done
"""


@pytest.mark.signals
def test_pretrain_script_takes_extra_flags_and_keeps_ctrl_c_messages(tmp_path):
    """Extra flags reach fairseq-train last (a smoke test can shrink the run); Ctrl-C in the terminal (SIGINT to the
    whole foreground group, tee included) still delivers what fairseq-train prints while it saves: tee -i.
    The script runs as a terminal's foreground job (SIGINT's default action), whatever this process inherited:
    under a suite started in the background SIGINT is ignored, and bash cannot trap a signal ignored at its start."""
    import os
    import signal
    import time

    from signal_setup import as_foreground_job

    bin_dir, data, save = tmp_path / "bin", tmp_path / "data", tmp_path / "save"
    bin_dir.mkdir()
    data.mkdir()
    (data / "dict.txt").write_text("a 1\n")  # data preparation is skipped
    (bin_dir / "fairseq-train").write_text(FAKE_TRAIN)
    (bin_dir / "fairseq-train").chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    proc = subprocess.Popen(["bash", str(RECIPES / "pretrain.sh"), "base", str(tmp_path / "text"), str(data), str(save),
                             "--encoder-layers", "2", "--max-update", "3"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            preexec_fn=as_foreground_job)
    log = save / "train.log"
    deadline = time.time() + 60
    while not (log.is_file() and "started" in log.read_text()):
        assert time.time() < deadline and proc.poll() is None, "the fake fairseq-train did not start"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    args = next(line for line in out.splitlines() if line.startswith("fake fairseq-train args:"))
    assert args.endswith(f"--save-dir {save} --log-format json --log-interval 100 --encoder-layers 2 --max-update 3")
    for text in (out, log.read_text()):
        assert "saving checkpoint_last.pt after the interrupt" in text and "interrupted by signal 2" in text


def test_continue_pretraining_stops_before_work_when_samples_exceed_positions(peer_dir, tmp_path):
    """TOKENS_PER_SAMPLE set above the model's positions: one message and exit 2 before BPE or binarizing."""
    import os
    import sys

    model = tmp_path / "model"
    model.mkdir()
    os.symlink(peer_dir / "checkpoint_last.no-optimizer-state.pt", model / "model.pt")
    os.symlink(peer_dir / "data-bin" / "dict.txt", model / "dict.txt")
    os.symlink(peer_dir / "tokenizer.json", model / "tokenizer.json")
    text = tmp_path / "text"
    text.mkdir()
    for split in ("train", "valid"):
        (text / f"{split}.txt").write_text("Some text.\n")
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHON=sys.executable, TOKENS_PER_SAMPLE="1000")
    proc = subprocess.run(["bash", str(RECIPES / "continue_pretraining.sh"), f"{model}/", str(text), f"{tmp_path}/out/"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"TOKENS_PER_SAMPLE=1000 exceeds the 128 positions of {model}/model.pt; "
                                   "set TOKENS_PER_SAMPLE=128 or less")
    assert sorted(os.listdir(tmp_path / "out")) == []  # no BPE, no data-bin, no training
