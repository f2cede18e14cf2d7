"""fairseq-hydra-train: YAML + overrides -> fairseq-train argv -> the same Namespace and the same run."""

import pytest
import torch

from fairseq import options
from fairseq_cli import hydra_train as ht

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: tiny models, busy cores

TINY_YAML = """
common:
  log_format: json
  log_interval: 1
  seed: 3
  cpu: true
  fp16: false
dataset:
  batch_size: 8
  skip_invalid_size_inputs_valid_test: true
  disable_validation: true
optimization:
  max_update: 3
  lr: [5e-4]
  update_freq: [1]
checkpoint:
  save_dir: ckpt
  no_epoch_checkpoints: true
model:
  _name: roberta_base
  encoder_layers: 4
  encoder_embed_dim: 32
  encoder_ffn_embed_dim: 64
  encoder_attention_heads: 2
task:
  _name: masked_lm
  data: ???
  sample_break_mode: complete
  tokens_per_sample: 64
criterion: masked_lm
optimizer:
  _name: adam
  adam_betas: [0.9, 0.98]
lr_scheduler:
  _name: polynomial_decay
  warmup_updates: 1
  total_num_update: ${optimization.max_update}
token_drop:
  token_drop: 0.5
  sctd_interval: 2
"""

TINY_ARGV = [
    "DATA", "--log-format", "json", "--log-interval", "1", "--seed", "3", "--cpu",
    "--batch-size", "8", "--skip-invalid-size-inputs-valid-test", "--disable-validation",
    "--max-update", "3", "--lr", "0.0005", "--update-freq", "1",
    "--save-dir", "ckpt", "--no-epoch-checkpoints",
    "--arch", "roberta_base", "--encoder-layers", "4", "--encoder-embed-dim", "32",
    "--encoder-ffn-embed-dim", "64", "--encoder-attention-heads", "2",
    "--task", "masked_lm", "--sample-break-mode", "complete", "--tokens-per-sample", "64",
    "--criterion", "masked_lm",
    "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)",
    "--lr-scheduler", "polynomial_decay", "--warmup-updates", "1", "--total-num-update", "3",
    "--token-drop", "0.5", "--sctd-interval", "2",
]


@pytest.fixture()
def config_dir(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY_YAML)
    return tmp_path


def test_config_to_argv_table(config_dir):
    cfg = ht.compose(config_dir, "tiny", ["task.data=DATA"])
    assert ht.config_to_argv(cfg) == TINY_ARGV


def test_resolve_config_equals_the_parsed_command_line(config_dir):
    args = ht.resolve_config(config_dir, "tiny", ["task.data=DATA"])
    expected = options.parse_args_and_arch(options.get_training_parser(), TINY_ARGV)
    assert vars(args) == vars(expected)
    assert args.criterion == "masked_lm" and args.fp16 is False and args.adam_betas == "(0.9, 0.98)"


def test_overrides(config_dir):
    args = ht.resolve_config(config_dir, "tiny.yaml", [
        "task.data=/x", "optimization.max_update=7", "+dataset.max_tokens=2048", "++common.seed=9",
        "~token_drop.sctd_interval", "optimization.lr=[1e-3]", "model.dropout=0.0"])
    assert (args.data, args.max_update, args.total_num_update, args.max_tokens, args.seed) == ("/x", 7, 7, 2048, 9)
    assert args.sctd_interval is None and args.lr == [1e-3] and args.dropout == 0.0


@pytest.mark.parametrize("overrides, needle", [
    ([], "task.data is required"),
    (["task.data=/x", "bogus.key=1"], "unknown config group 'bogus'"),
    (["task.data=/x", "model.no_such_flag=3"], "--no-such-flag"),
    (["task.data=/x", "~model.nothing"], "~model.nothing"),
    (["task.data=/x", "justaword"], "justaword"),
    (["task.data=/x", "common.fp16=false", "common.memory_efficient_fp16=true"], "common.fp16"),
])
def test_errors_are_one_line_and_name_the_problem(config_dir, overrides, needle):
    with pytest.raises(ValueError) as info:
        ht.resolve_config(config_dir, "tiny", overrides)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_missing_config_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="config-dir"):
        ht.resolve_config(tmp_path / "nope", "x", [])
    (tmp_path / "a.yaml").write_text("task: {data: /x}\n")
    with pytest.raises(FileNotFoundError, match=r"'zz'.*available: a"):
        ht.resolve_config(tmp_path, "zz", [])


def test_cli_print_argv(config_dir, capsys):
    ht.cli_main(["--config-dir", str(config_dir), "--config-name", "tiny", "--print-argv", "task.data=DATA"])
    assert capsys.readouterr().out.strip() == "fairseq-train DATA " + " ".join(
        f"'{a}'" if " " in a else a for a in TINY_ARGV[1:])
    with pytest.raises(SystemExit):
        ht.cli_main(["--config-dir", str(config_dir), "--config-name", "tiny"])
    assert capsys.readouterr().err.startswith("fairseq-hydra-train: error:")


def test_multirun_sweeps_in_place(config_dir, capsys, caplog):
    """-m (hydra's multirun): `key=a,b` is a sweep, the last override varying fastest; with several jobs each
    saves to save_dir/<job>; one job is the plain run. A list `[a,b]` is one value. `-config-dir` (one dash,
    as README.glue.md of fairseq's examples/roberta writes it) is --config-dir; hydra.* settings warn."""
    assert ht.sweep(["a.x=1,2", "b.y=[3,4]", "~c.z", "+d.w=5,6"]) == [
        ["a.x=1", "b.y=[3,4]", "~c.z", "+d.w=5"], ["a.x=1", "b.y=[3,4]", "~c.z", "+d.w=6"],
        ["a.x=2", "b.y=[3,4]", "~c.z", "+d.w=5"], ["a.x=2", "b.y=[3,4]", "~c.z", "+d.w=6"]]
    ht.cli_main(["-m", "-config-dir", str(config_dir), "--config-name", "tiny", "--print-argv", "task.data=DATA",
                 "model.dropout=0.1,0.2", "hydra.sweep.dir=elsewhere"])
    jobs = [line for line in capsys.readouterr().out.splitlines() if line.startswith("fairseq-train ")]
    assert len(jobs) == 2
    for num, (job, dropout) in enumerate(zip(jobs, ("0.1", "0.2"))):
        assert f"--save-dir ckpt/{num}" in job and f"--dropout {dropout}" in job
    assert "hydra.sweep.dir=elsewhere: hydra's own settings have no effect here" in caplog.text
    ht.cli_main(["-m", "--config-dir", str(config_dir), "--config-name", "tiny", "--print-argv", "task.data=DATA"])
    assert [line for line in capsys.readouterr().out.splitlines() if line.startswith("fairseq-train ")] == [
        "fairseq-train DATA " + " ".join(f"'{a}'" if " " in a else a for a in TINY_ARGV[1:])]


@pytest.mark.slow
def test_hydra_run_equals_fairseq_train_run(config_dir, peer_dir, tmp_path):
    """The same 3 updates (token dropping + one ScTD update) through both entry points: equal weights."""
    from fairseq_cli import train

    data = str(peer_dir / "data-bin")
    ht.cli_main(["--config-dir", str(config_dir), "--config-name", "tiny", f"task.data={data}",
                 f"checkpoint.save_dir={tmp_path / 'hydra'}"])
    argv = [data] + TINY_ARGV[1:]
    argv[argv.index("ckpt")] = str(tmp_path / "shell")
    train.cli_main(argv)
    a = torch.load(tmp_path / "hydra" / "checkpoint_last.pt", weights_only=True)
    b = torch.load(tmp_path / "shell" / "checkpoint_last.pt", weights_only=True)
    assert a["optimizer_history"][-1]["num_updates"] == b["optimizer_history"][-1]["num_updates"] == 3
    assert a["model"].keys() == b["model"].keys()
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
