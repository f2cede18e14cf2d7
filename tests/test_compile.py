"""--compile: the compiled encoder layers train like eager ones, and a missing compiler is one clear line.

The equality run needs a C++ compiler for inductor on CPU; without one it is skipped (and the
missing-compiler test below shows what users get instead). Tiny model, few updates: compiling the
layer graphs takes ~20-40 s on a 2-core machine.
"""
import shutil

import pytest
import torch

TINY = ["--encoder-layers", "4", "--encoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64",
        "--encoder-attention-heads", "2", "--optimizer", "adam"]


def base_argv(peer_dir):
    return [str(peer_dir / "data-bin"), "--task", "masked_lm", "--arch", "roberta", *TINY,
            "--tokens-per-sample", "32", "--sample-break-mode", "complete", "--batch-size", "4",
            "--optimizer", "adam", "--lr", "1e-3", "--lr-scheduler", "polynomial_decay", "--warmup-updates", "0",
            "--total-num-update", "10", "--max-update", "4", "--update-freq", "2", "--dropout", "0",
            "--attention-dropout", "0", "--cpu", "--log-format", "none", "--disable-validation",
            "--save-interval-updates", "4", "--token-drop", "0.5", "--sctd-interval", "2", "--seed", "3"]


def run_train(argv):
    from fairseq import options
    from fairseq_cli import train
    return train.main(options.parse_args_and_arch(options.get_training_parser(), argv))


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="no C++ compiler: torch.compile (inductor) cannot run on this CPU machine")
def test_compiled_training_equals_eager_with_token_drop_and_sctd(peer_dir, tmp_path):
    eager = run_train(base_argv(peer_dir) + ["--save-dir", str(tmp_path / "eager")])
    comp = run_train(base_argv(peer_dir) + ["--save-dir", str(tmp_path / "comp"), "--compile"])
    assert comp.model.encoder.sentence_encoder.compiled_layer_fn is not None and comp.num_updates == 4
    for (n, p), q in zip(eager.model.named_parameters(), comp.model.parameters()):
        torch.testing.assert_close(q, p, rtol=0, atol=1e-4, msg=n)
    torch.testing.assert_close(comp.task.token_dropper.importance.scores,
                               eager.task.token_dropper.importance.scores, rtol=0, atol=1e-4)
    # checkpoints are plain: same keys as eager, no torch.compile "_orig_mod." prefixes
    a = torch.load(tmp_path / "eager" / "checkpoint_last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "comp" / "checkpoint_last.pt", weights_only=True)["model"]
    assert list(b) == list(a) and not any("_orig_mod" in k for k in b)


def test_missing_compiler_is_one_clear_line(peer_dir, tmp_path, monkeypatch, capsys):
    from fairseq_cli import train
    monkeypatch.setenv("PATH", str(tmp_path))  # no g++ / c++ to be found
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(SystemExit) as e:
        train.cli_main(base_argv(peer_dir) + ["--save-dir", str(tmp_path / "x"), "--compile"])
    assert e.value.code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("fairseq-train: error: --compile on CPU needs a C++ compiler for torch.compile (inductor): "
                       "'g++' not found on PATH (e.g. apt-get install g++, or set CXX); or drop --compile")
