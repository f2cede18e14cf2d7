"""glue.sh's report (fairseq_cli/glue_report.py): every dev metric of a run, the best beside its majority class."""
import json

import pytest

from fairseq_cli import glue_report


def _log(rows):
    return "".join(f"2026-12-07 01:00:00 | INFO | valid | {json.dumps(r)}\n" for r in rows) + "other line\n"


def test_rte_best_dev_beside_its_majority_class(shared_dir, tmp_path, capsys):
    rows = [{"epoch": 1, "valid_loss": "1.01", "valid_accuracy": "47.3"},
            {"epoch": 2, "valid_loss": "0.998", "valid_accuracy": "52.7"}]
    (tmp_path / "RTE.train.log").write_text(_log(rows))
    glue_report.main(["RTE", str(tmp_path / "RTE.train.log"), str(shared_dir / "data" / "glue")])
    assert capsys.readouterr().out.splitlines() == [
        "RTE dev epoch 1: loss=1.01, accuracy=47.3",
        "RTE dev epoch 2: loss=0.998, accuracy=52.7",
        "RTE best dev: loss=0.998, accuracy=52.7 (majority class 52.7)",
        "RTE majority class: always 'entailment', the most frequent label of train.tsv, scored on the same dev set"]


def test_mrpc_f1_baseline_and_stsb_without_one():
    rows = [{"epoch": 1, "valid_loss": "0.9", "valid_f1": "81.2", "valid_accuracy": "68.4"}]
    lines = glue_report.report("MRPC", rows, ("1", {"f1": 81.2244, "accuracy": 68.382}))
    assert lines[1] == "MRPC best dev: loss=0.9, f1=81.2 (majority class 81.22), accuracy=68.4 (majority class 68.4)"
    rows = [{"epoch": 1, "valid_loss": "0.5", "valid_pearson": "11.6"}, {"epoch": 2, "valid_loss": "0.4"}]
    assert glue_report.report("STS-B", rows, None) == [
        "STS-B dev epoch 1: loss=0.5, pearson=11.6, spearman=n/a", "STS-B dev epoch 2: loss=0.4, pearson=n/a, spearman=n/a",
        "STS-B best dev: loss=0.4, pearson=n/a, spearman=n/a"]


def test_no_validation_lines_is_one_error(tmp_path):
    (tmp_path / "log").write_text("nothing\n")
    with pytest.raises(SystemExit, match="no validation lines in"):
        glue_report.main(["RTE", str(tmp_path / "log"), str(tmp_path)])
