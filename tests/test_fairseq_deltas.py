"""Behaviour that fairseq 0.12.2's tests and docs fix, each as fairseq does it."""
import argparse
import shutil

import pytest

from fairseq import options
from fairseq_cli import validate

BASE = ["--arch", "roberta_tiny", "--task", "masked_lm", "--criterion", "masked_lm", "--optimizer", "adam",
        "--batch-size", "4", "--tokens-per-sample", "32"]


def parse(*argv):
    return options.parse_args_and_arch(options.get_training_parser(), list(argv))


@pytest.mark.parametrize("reset", ["--reset-optimizer", "--reset-lr-scheduler", "--reset-meters", "--reset-dataloader"])
def test_finetune_from_model_with_a_reset_flag_is_an_error(peer_dir, tmp_path, reset):
    data = str(peer_dir / "data-bin")
    ckpt = str(peer_dir / "checkpoint_last.no-optimizer-state.pt")
    with pytest.raises(ValueError, match=f"--finetune-from-model can not be set together with either .*given: {reset}"):
        parse(data, *BASE, "--finetune-from-model", ckpt, reset)
    assert parse(data, *BASE, "--finetune-from-model", ckpt).finetune_from_model == ckpt
    assert parse(data, *BASE, reset).finetune_from_model is None


def test_valid_splits_left_out_of_valid_subset_are_an_error(peer_dir, tmp_path):
    data = tmp_path / "data-bin"
    shutil.copytree(peer_dir / "data-bin", data)
    for ext in ("bin", "idx"):
        shutil.copy(data / f"valid.{ext}", data / f"valid1.{ext}")
    with pytest.raises(ValueError, match=r"valid splits \['valid1'\] .* --ignore-unused-valid-subsets"):
        parse(str(data), *BASE)
    assert parse(str(data), *BASE, "--valid-subset", "valid,valid1").valid_subset == "valid,valid1"
    assert parse(str(data), *BASE, "--ignore-unused-valid-subsets").ignore_unused_valid_subsets
    assert parse(str(data), *BASE, "--disable-validation").disable_validation


def test_validate_logs_in_its_own_log_format(peer_dir, caplog):
    """fairseq's checkpoint was trained with --log-format json; fairseq-validate's own (default) format wins."""
    caplog.set_level("INFO")
    argv = [str(peer_dir / "data-bin"), "--path", str(peer_dir / "checkpoint_last.no-optimizer-state.pt"),
            "--task", "masked_lm", "--batch-size", "32", "--max-valid-steps", "1"]
    args = validate.parse_args(argv)
    assert args.log_format is None and args.log_interval == 100  # not the checkpoint's json / 10
    validate.main(args)
    line = [r.getMessage() for r in caplog.records if r.name == "valid"][-1]
    assert line.startswith("valid on 'valid' subset | loss ")


def test_combine_valid_subsets_validates_valid_and_valid1_as_one(peer_dir, tmp_path):
    from fairseq_cli import train

    data = tmp_path / "data-bin"
    shutil.copytree(peer_dir / "data-bin", data)
    for ext in ("bin", "idx"):
        shutil.copy(data / f"valid.{ext}", data / f"valid1.{ext}")
    argv = [str(data), *BASE, "--max-update", "1", "--max-valid-steps", "1", "--save-dir", str(tmp_path / "ckpt"),
            "--no-save", "--sample-break-mode", "eos", "--skip-invalid-size-inputs-valid-test"]  # a sample a sentence
    alone = train.main(parse(*argv, "--ignore-unused-valid-subsets")).task.dataset("valid")
    for flag in ("--combine-valid-subsets", "--combine-val"):
        combined = train.main(parse(*argv, flag)).task.dataset("valid")
        assert len(combined) == 2 * len(alone)
        assert list(combined.sizes[0][len(alone):]) == list(alone.sizes[0])  # valid1 (a copy of valid) follows valid


def test_sentence_ranking_criterion_scores_each_candidate_with_the_ranking_head(tmp_path):
    import math

    import torch

    from fairseq import registry

    class Scorer(torch.nn.Module):
        """score of a candidate = its first token id / 10 (one output of the 'rank' head)."""

        def __init__(self):
            super().__init__()
            self.classification_heads = {"rank": None}

        def forward(self, src_tokens, src_lengths=None, classification_head_name=None, **unused):
            assert classification_head_name == "rank"
            return src_tokens[:, :1].float() / 10, None

    cand = [torch.tensor([[1, 5], [3, 5]]), torch.tensor([[4, 5], [2, 5]]), torch.tensor([[2, 5], [9, 5]])]
    sample = {"id": torch.tensor([7, 8]), "ntokens": 12, "nsentences": 2, "target": torch.tensor([1, 0]),
              **{f"net_input{i + 1}": {"src_tokens": c} for i, c in enumerate(cand)}}
    cfg = argparse.Namespace(ranking_head_name="rank", save_predictions=str(tmp_path / "pred.tsv"), num_classes=3)
    crit = registry.lookup("criterion", "sentence_ranking").build_criterion(cfg, None)
    loss, size, log = crit(Scorer(), sample)
    scores = torch.tensor([[0.1, 0.4, 0.2], [0.3, 0.2, 0.9]])
    expected = -(torch.log_softmax(scores, 1)[0, 1] + torch.log_softmax(scores, 1)[1, 0])
    assert size == 2 and float(loss) == pytest.approx(float(expected), rel=1e-6)
    out = type(crit).reduce_metrics([log])
    assert out["accuracy"] == 50.0 and out["loss"] == pytest.approx(float(expected) / 2 / math.log(2))
    crit.prediction_h.close()
    assert (tmp_path / "pred.tsv").read_text() == "7\t1\t1\n8\t2\t0\n"  # fairseq's: id, prediction, label
