"""A fairseq --user-dir plugin (examples/plugin/mlm_plugin: a new RoBERTa size on `roberta`, a criterion
subclassing MaskedLmLoss, a task subclassing MaskedLMTask), written only against fairseq 0.12.2's API.

It must parse (its arch defaults, its config field as a flag), train with and without token dropping +
ScTD exactly as the built-in classes do (same parameters: the token-dropping step reaches the plugin's
own forward through sample["net_input"]), train through spawned workers and torchrun, and load with
from_pretrained(..., user_dir=...) in a fresh process.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fairseq import options, registry
from fairseq.distributed import utils as D
from fairseq.user_dir import import_user_module
from test_launch import _env, _records, train_in_process as _train_in_process  # the launch tests' helpers

REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "examples" / "plugin" / "mlm_plugin"
UPDATES = 3
COMMON = ["--optimizer", "adam", "--lr", "1e-3", "--tokens-per-sample", "32", "--sample-break-mode", "complete",
          "--batch-size", "4", "--dropout", "0", "--attention-dropout", "0", "--cpu", "--seed", "3",
          "--max-update", str(UPDATES), "--disable-validation", "--log-format", "json", "--log-interval", "1",
          "--no-epoch-checkpoints"]
PLUGIN_FLAGS = ["--user-dir", str(PLUGIN), "--task", "counting_masked_lm", "--criterion", "masked_lm_with_accuracy",
                "--arch", "roberta_plugin_tiny"]
BUILTIN_FLAGS = ["--task", "masked_lm", "--criterion", "masked_lm", "--arch", "roberta_base", "--encoder-layers", "4",
                 "--encoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64", "--encoder-attention-heads", "2"]
TOKEN_DROP = ["--token-drop", "0.5", "--sctd-interval", "2"]
pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def test_plugin_registers_its_names_and_flags():
    import_user_module(argparse.Namespace(user_dir=str(PLUGIN)))
    import_user_module(argparse.Namespace(user_dir=str(PLUGIN)))  # once per process: a second call is a no-op
    assert "counting_masked_lm" in registry.choices("task")
    assert "masked_lm_with_accuracy" in registry.choices("criterion")
    args = options.parse_args_and_arch(options.get_training_parser(),
                                       ["DATA", *PLUGIN_FLAGS, *COMMON, "--encoder-layers", "6", "--count-every", "2"])
    # the plugin's arch defaults, an explicit flag winning, and RoBERTa's own defaults under them
    assert (args.encoder_layers, args.encoder_embed_dim, args.encoder_attention_heads) == (6, 32, 2)
    assert args.dropout == 0.0 and args.activation_fn == "gelu" and args.count_every == 2
    with pytest.raises(ValueError, match=r"unknown --task 'nope'; choose from: .*counting_masked_lm"):
        options.parse_args_and_arch(options.get_training_parser(), ["DATA", *PLUGIN_FLAGS, *COMMON, "--task", "nope"])


def test_user_dir_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="--user-dir nowhere_at_all"):
        import_user_module(argparse.Namespace(user_dir="nowhere_at_all"))
    clash = tmp_path / "json"  # a package name that is already a module
    clash.mkdir()
    (clash / "__init__.py").write_text("")
    with pytest.raises(ImportError, match="already taken"):
        import_user_module(argparse.Namespace(user_dir=str(clash)))


@pytest.mark.parametrize("drop", [[], TOKEN_DROP], ids=["full", "token_drop_sctd"])
def test_plugin_trains_exactly_like_the_builtin_classes(peer_dir, tmp_path, drop):
    data = str(peer_dir / "data-bin")
    plugin, plugin_logs = _train_in_process([data, *PLUGIN_FLAGS, *COMMON, *drop, "--save-dir", str(tmp_path / "p")])
    builtin, builtin_logs = _train_in_process([data, *BUILTIN_FLAGS, *COMMON, *drop, "--save-dir", str(tmp_path / "b")])
    assert type(plugin.task).__name__ == "CountingMaskedLMTask" and plugin.task.sentences_seen == 4 * UPDATES
    assert type(plugin.criterion).__name__ == "MaskedLmWithAccuracy"
    for name, p in builtin.model.state_dict().items():
        torch.testing.assert_close(plugin.model.state_dict()[name], p, rtol=0, atol=1e-6, msg=name)
    assert [r["loss"] for r in plugin_logs] == [r["loss"] for r in builtin_logs]
    assert all("accuracy" in r for r in plugin_logs)  # the plugin's own metrics.log_scalar reaches the logs
    if drop:
        assert plugin.task.token_dropper is not None
        assert [r["drop_rate"] for r in plugin_logs] == [r["drop_rate"] for r in builtin_logs]
        assert float(plugin_logs[0]["drop_rate"]) > 0.3
        assert "sctd_kl_local" in plugin_logs[0] and "sctd_kl_local" not in plugin_logs[1]  # every 2nd update
        assert plugin_logs[0]["sctd_kl_local"] == builtin_logs[0]["sctd_kl_local"]


def _run(argv, timeout=240):
    proc = subprocess.run([sys.executable, *argv], env=_env(), cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def reference(peer_dir, tmp_path_factory):
    """One process, --update-freq 2: the global batch of the 2-rank launches."""
    save = tmp_path_factory.mktemp("plugin_single")
    trainer, logs = _train_in_process([str(peer_dir / "data-bin"), *PLUGIN_FLAGS, *COMMON, *TOKEN_DROP,
                                       "--update-freq", "2", "--save-dir", str(save)])
    return {"params": {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}, "records": logs}


def _check_launch(stdout, save_dir, reference):
    from fairseq.checkpoint.files import load_checkpoint_file

    records = _records(stdout.splitlines())
    assert "training on 2 process(es)" in stdout
    assert [r["loss"] for r in records] == [r["loss"] for r in reference["records"]]
    assert all("accuracy" in r and "drop_rate" in r for r in records)
    saved = load_checkpoint_file(str(save_dir / "checkpoint_last.pt"))
    diff = max((saved["model"][k].float() - v.float()).abs().max().item() for k, v in reference["params"].items())
    assert diff < 1e-6, diff


def test_plugin_trains_in_spawned_workers(peer_dir, tmp_path, reference):
    out = _run(["-m", "fairseq_cli.train", str(peer_dir / "data-bin"), *PLUGIN_FLAGS, *COMMON, *TOKEN_DROP,
                "--distributed-world-size", "2", "--save-dir", str(tmp_path)])
    _check_launch(out, tmp_path, reference)


def test_plugin_trains_under_torchrun(peer_dir, tmp_path, reference):
    out = _run(["-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2", "--master_addr",
                "127.0.0.1", "--master_port", str(D.free_port()), "-m", "fairseq_cli.train",
                str(peer_dir / "data-bin"), *PLUGIN_FLAGS, *COMMON, *TOKEN_DROP, "--save-dir", str(tmp_path)])
    _check_launch(out, tmp_path, reference)


@pytest.fixture(scope="module")
def plugin_checkpoint(peer_dir, tmp_path_factory):
    save = tmp_path_factory.mktemp("plugin_ckpt")
    _train_in_process([str(peer_dir / "data-bin"), *PLUGIN_FLAGS, *COMMON, "--max-update", "1", "--save-dir", str(save)])
    return save


def test_plugin_checkpoint_loads_with_from_pretrained_user_dir(peer_dir, plugin_checkpoint):
    load = ("import sys; from fairseq.models.roberta import RobertaModel; "
            "kw = dict(user_dir=sys.argv[3]) if len(sys.argv) > 3 else {}; "
            "r = RobertaModel.from_pretrained(sys.argv[1], 'checkpoint_last.pt', sys.argv[2], **kw); "
            "print(type(r.task).__name__, r.cfg.model._name, len(r.model.encoder.sentence_encoder.layers))")
    where = [str(plugin_checkpoint), str(peer_dir / "data-bin")]
    out = _run(["-c", load, *where, str(PLUGIN)])  # a fresh process: only user_dir= registers the plugin
    assert out.split() == ["CountingMaskedLMTask", "roberta_plugin_tiny", "4"]
    proc = subprocess.run([sys.executable, "-c", load, *where], env=_env(), cwd=REPO, capture_output=True, text=True)
    assert proc.returncode != 0 and "unknown --task 'counting_masked_lm'" in proc.stderr


def test_plugin_checkpoint_validates_with_user_dir(peer_dir, plugin_checkpoint):
    out = _run(["-m", "fairseq_cli.validate", str(peer_dir / "data-bin"), "--user-dir", str(PLUGIN),
                "--task", "counting_masked_lm", "--path", str(plugin_checkpoint / "checkpoint_last.pt"),
                "--batch-size", "8", "--max-valid-steps", "2", "--log-format", "json",
                "--skip-invalid-size-inputs-valid-test"])
    line = [ln for ln in out.splitlines() if " | valid | " in ln][-1]
    assert set(json.loads(line.split(" | ", 3)[3])) >= {"loss", "accuracy", "ppl"}  # the plugin criterion's keys


def test_plugin_from_a_hydra_config(tmp_path):
    from fairseq_cli import hydra_train

    (tmp_path / "plugin.yaml").write_text(
        f"common:\n  user_dir: {PLUGIN}\n  cpu: true\ntask:\n  _name: counting_masked_lm\n  data: DATA\n"
        "  count_every: 3\n  tokens_per_sample: 32\nmodel:\n  _name: roberta_plugin_tiny\n"
        "criterion: masked_lm_with_accuracy\noptimizer:\n  _name: adam\ndataset:\n  batch_size: 4\n")
    args = hydra_train.resolve_config(tmp_path, "plugin", ["optimization.max_update=2"])
    assert (args.task, args.arch, args.criterion, args.count_every) == (
        "counting_masked_lm", "roberta_plugin_tiny", "masked_lm_with_accuracy", 3)
    assert args.encoder_layers == 4 and args.max_update == 2
