"""fairseq-validate on fairseq's own checkpoint reproduces fairseq's valid loss (train.log: 10.306)."""
import pytest

from fairseq_cli import validate


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def test_validate_fixture_checkpoint(peer_dir, caplog):
    caplog.set_level("INFO")
    args = validate.parse_args([str(peer_dir / "data-bin"), "--path",
                                str(peer_dir / "checkpoint_last.no-optimizer-state.pt"), "--task", "masked_lm",
                                "--batch-size", "32", "--log-format", "simple"])
    assert args.criterion == "masked_lm" and args.tokens_per_sample == 128  # from fairseq's cfg
    (res,) = validate.main(args)
    assert res["loss"] == 10.306 and res["ppl"] == 1265.66 and res["subset"] == "valid"
    line = [r.getMessage() for r in caplog.records if r.name == "valid"][-1]
    assert line.startswith("valid on 'valid' subset | loss 10.306 | ppl 1265.66 | wps ")


def test_validate_errors(peer_dir, tmp_path, capsys):
    with pytest.raises(SystemExit):
        validate.cli_main([str(peer_dir / "data-bin"), "--path", str(tmp_path / "missing.pt")])
    err = capsys.readouterr().err
    assert "checkpoint not found" in err and "missing.pt" in err
