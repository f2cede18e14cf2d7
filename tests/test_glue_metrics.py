"""GLUE metrics against hand-computed values and, when importable, scikit-learn / scipy."""
import math

import numpy as np
import pytest

from fairseq import glue_metrics as gm

PREDS = [1, 0, 1, 1, 0, 1, 0, 0, 1, 1]
GOLD = [1, 0, 0, 1, 0, 1, 1, 0, 0, 1]
# tp = 4 (0,3,5,9), fp = 2 (2,8), fn = 1 (6), tn = 3 (1,4,7)


def test_confusion_and_hand_values():
    assert gm.confusion_counts(PREDS, GOLD) == {"tp": 4, "fp": 2, "fn": 1, "tn": 3}
    assert gm.accuracy(PREDS, GOLD) == pytest.approx(0.7)
    assert gm.f1(PREDS, GOLD) == pytest.approx(2 * 4 / (2 * 4 + 2 + 1))
    assert gm.matthews_corrcoef(PREDS, GOLD) == pytest.approx((4 * 3 - 2 * 1) / math.sqrt(6 * 5 * 5 * 4))


def test_degenerate_cases_are_zero_not_nan():
    assert gm.f1([0, 0], [0, 0]) == 0.0
    assert gm.matthews_corrcoef([1, 1, 1], [1, 0, 1]) == 0.0
    assert gm.pearson([1, 1, 1], [1, 2, 3]) == 0.0


def test_correlations_hand_values():
    x = [1.0, 2.0, 3.0, 4.0]
    assert gm.pearson(x, [2.0, 4.0, 6.0, 8.0]) == pytest.approx(1.0)
    assert gm.pearson(x, [4.0, 3.0, 2.0, 1.0]) == pytest.approx(-1.0)
    # ties by average rank: [10, 20, 20, 30] -> ranks [1, 2.5, 2.5, 4]
    np.testing.assert_allclose(gm.average_ranks([10, 20, 20, 30]), [1, 2.5, 2.5, 4])
    np.testing.assert_allclose(gm.average_ranks([3, 1, 3, 3]), [3, 1, 3, 3])
    assert gm.spearman([1, 2, 3, 4], [1, 4, 9, 16]) == pytest.approx(1.0)


def test_against_sklearn_and_scipy():
    rng = np.random.default_rng(0)
    p = rng.integers(0, 2, 200)
    t = rng.integers(0, 2, 200)
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    assert gm.f1(p, t) == pytest.approx(sklearn_metrics.f1_score(t, p))
    assert gm.matthews_corrcoef(p, t) == pytest.approx(sklearn_metrics.matthews_corrcoef(t, p))
    assert gm.accuracy(p, t) == pytest.approx(sklearn_metrics.accuracy_score(t, p))
    stats = pytest.importorskip("scipy.stats")
    x = np.round(rng.normal(size=300), 1)  # rounding creates many ties
    y = np.round(x + rng.normal(size=300), 1)
    assert gm.pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-12)
    assert gm.spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-12)


def test_glue_metric_map_and_errors():
    assert gm.glue_metric("CoLA") == ("mcc",)
    assert gm.glue_metric("MRPC") == ("f1", "accuracy")
    assert gm.glue_metric("QQP") == ("f1", "accuracy")
    assert gm.glue_metric("STS-B") == ("pearson", "spearman")
    for t in ("RTE", "SST-2", "MNLI", "QNLI", "WNLI"):
        assert gm.glue_metric(t) == ("accuracy",)
    with pytest.raises(ValueError, match="unknown GLUE task 'XYZ'"):
        gm.glue_metric("XYZ")
    with pytest.raises(ValueError, match="differ in length"):
        gm.accuracy([1, 0], [1])
    assert gm.compute_glue_metrics("MRPC", PREDS, GOLD) == pytest.approx({"f1": 8 / 11, "accuracy": 0.7})


def test_majority_baseline(shared_dir):
    """What a model that learned nothing scores: RTE's 52.7 is always answering "entailment" (146 of 277)."""
    from fairseq_cli.glue_prep import read_split

    glue = shared_dir / "data" / "glue"
    labels = {split: read_split(str(glue / "RTE" / f"{split}.tsv"), "RTE", split, True)[1] for split in ("train", "dev")}
    majority, scores = gm.majority_baseline("RTE", labels["train"], labels["dev"])
    assert majority == "entailment" and round(scores["accuracy"], 1) == 52.7 and list(scores) == ["accuracy"]
    # MRPC's F1 is of label "1" (its majority): 2*279 / (2*279 + 129) on dev
    majority, scores = gm.majority_baseline("MRPC", ["1", "1", "0"], ["1"] * 279 + ["0"] * 129)
    assert majority == "1" and scores["f1"] == pytest.approx(100 * 558 / 687) and scores["accuracy"] == pytest.approx(100 * 279 / 408)
    assert gm.majority_baseline("CoLA", ["0", "1", "1"], ["1", "0"])[1] == {"mcc": 0.0}
    with pytest.raises(ValueError, match="regression"):
        gm.majority_baseline("STS-B", ["1.0"], ["2.0"])
