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
    command = re.sub(r"\$\{?(\w+)\}?", lambda m: env[m.group(1)], match.group(1))
    return shlex.split(command)


def _parse(argv):
    return options.parse_args_and_arch(options.get_training_parser(), argv)


@pytest.mark.parametrize("size", ["base", "large"])
def test_shell_and_yaml_recipes_resolve_to_the_same_namespace(size):
    shell = vars(_parse(fairseq_train_argv(RECIPES / f"pretrain_{size}.sh", {"DATA_DIR": DATA, "SAVE_DIR": SAVE})))
    yaml = vars(resolve_config(CONFIG_DIR, f"pretrain_{size}", [f"task.data={DATA}", f"checkpoint.save_dir={SAVE}"]))
    assert shell.keys() == yaml.keys()
    assert {k: v for k, v in shell.items() if yaml[k] != v} == {}
    assert shell["arch"] == f"roberta_{size}" and shell["token_drop"] == 0.5
    assert shell["data"] == DATA and shell["save_dir"] == SAVE


@pytest.mark.parametrize("size", ["base", "large"])
def test_shell_recipe_is_the_papers_command(size):
    """Exactly the flags of SPEC section 1 (arch aside), so the recipe cannot drift from the paper."""
    paper = [DATA] + shlex.split(PAPER_FLAGS.replace("ARCH", f"roberta_{size}").replace("SAVE_DIR", SAVE))
    script = fairseq_train_argv(RECIPES / f"pretrain_{size}.sh", {"DATA_DIR": DATA, "SAVE_DIR": SAVE})
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
    for name in ("pretrain_base.sh", "pretrain_large.sh", "quickstart.sh"):
        subprocess.run(["bash", "-n", str(RECIPES / name)], check=True)


def test_readme_names_every_recipe():
    readme = (RECIPES / "README.md").read_text()
    for name in ("pretrain_base.sh", "pretrain_large.sh", "quickstart.sh", "pretrain_base.yaml",
                 "pretrain_large.yaml", "fairseq-hydra-train", "fairseq-sctd-quickstart", "--token-drop",
                 "--sctd-interval", "--sctd-weight"):
        assert name in readme, name
