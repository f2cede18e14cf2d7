"""sentence_prediction task + criterion: the real-fairseq RTE sample, metrics, head restore, errors."""
import argparse
import json
import math
import shutil

import pytest
import torch

from fairseq.criterions.sentence_prediction import SentencePredictionCriterion
from fairseq.tasks.sentence_prediction import SentencePredictionTask


def _args(data, **kw):
    a = dict(data=str(data), num_classes=2, regression_target=False, init_token=0, separator_token=2,
             max_positions=512, classification_head_name="sentence_classification_head", seed=1,
             shorten_method="none", shorten_data_split_list="", no_shuffle=False)
    a.update(kw)
    return argparse.Namespace(**a)


@pytest.fixture(scope="module")
def rte(peer_dir):
    return peer_dir / "reference" / "glue_rte20"


def test_reproduces_fairseq_rte_samples_and_batches(rte):
    ref = json.loads((rte / "sentence_prediction_samples.json").read_text())
    task = SentencePredictionTask.setup_task(_args(rte / "RTE-bin"))
    assert len(task.source_dictionary) == ref["data_dictionary_len_with_mask"]
    assert task.label_dictionary.symbols == ref["label_dictionary_symbols"]
    assert task.label_dictionary.count == ref["label_dictionary_counts"]
    ds = task.load_dataset("valid")
    for item in ref["items_by_dataset_index"]:
        got = ds[item["index"]]
        assert got["source"].tolist() == item["src_tokens"]
        assert int(ds.sizes[item["index"]]) == item["length"]
        assert got["target"].tolist() == [item["target"]]
    assert ds.ordered_indices().tolist() == ref["ordered_indices"]
    itr = task.get_batch_iterator(ds, max_tokens=4400, max_sentences=16, max_positions=512, seed=1)
    assert [b.tolist() for b in itr.frozen_batches] == ref["A_validation_iterator_batches"]
    first = next(itr.next_epoch_itr(shuffle=False, set_dataset_epoch=False))
    want = ref["A_validation_iterator_first_batch"]
    assert first["id"].tolist() == want["id"] and first["nsentences"] == want["nsentences"]
    assert first["ntokens"] == want["ntokens"]
    assert first["net_input"]["src_tokens"].tolist() == want["net_input"]["src_tokens"]
    assert first["net_input"]["src_lengths"].tolist() == want["net_input"]["src_lengths"]
    assert first["target"].shape == (16, 1) and first["target"].tolist() == want["target"]
    itr = task.get_batch_iterator(ds, max_tokens=4400, max_sentences=16, max_positions=512, seed=1)
    b = next(itr.next_epoch_itr(shuffle=True))
    want = ref["B_training_style_iterator_first_batch"]
    assert b["id"].tolist() == want["id"]
    assert b["net_input"]["src_tokens"].tolist() == want["net_input"]["src_tokens"]


class _Linear(torch.nn.Module):
    """A stand-in model: class scores are fixed per sample id, so the criterion is checked exactly."""

    def __init__(self, table):
        super().__init__()
        self.table = table
        self.classification_heads = {"sentence_classification_head": None}

    def forward(self, src_tokens, features_only=False, classification_head_name=None, **kw):
        return self.table[src_tokens[:, 1]], {}


def test_criterion_classification_loss_and_metrics():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 3.0], [0.5, 0.0]])
    target = torch.tensor([[0], [0], [1], [1]])
    sample = {"net_input": {"src_tokens": torch.tensor([[0, 0], [0, 1], [0, 2], [0, 3]])},
              "target": target, "ntokens": 8, "nsentences": 4}
    crit = SentencePredictionCriterion.build_criterion(_args("x"), None)
    model = _Linear(logits).eval()
    loss, n, log = crit(model, sample)
    expected = -sum(torch.log_softmax(logits[i], 0)[target[i, 0]] for i in range(4))
    assert n == 4 and float(loss) == pytest.approx(float(expected), rel=1e-6)
    out = SentencePredictionCriterion.reduce_metrics([log])
    # preds 0,1,1,0 vs gold 0,0,1,1: tp=1 fp=1 fn=1 tn=1
    assert out["accuracy"] == 50.0 and out["f1"] == 50.0 and out["mcc"] == 0.0
    assert out["loss"] == pytest.approx(float(expected) / 4 / math.log(2))
    assert out["nll_loss"] == pytest.approx(float(expected) / 8 / math.log(2))


def test_f1_is_about_glues_positive_label_whatever_its_index():
    """MRPC's label dictionary is in train-frequency order: "1" (paraphrase, 68%) is index 0. F1 is GLUE's,
    of label "1": a model that always answers "1" gets MRPC's baseline F1, not 0."""
    from fairseq.data import Dictionary

    labels = Dictionary()
    for sym in ("1", "0"):
        labels.add_symbol(sym)
    crit = SentencePredictionCriterion.build_criterion(_args("x"), argparse.Namespace(label_dictionary=labels))
    assert crit.positive == 0
    logits = torch.tensor([[1.0, 0.0]] * 4)  # always index 0: label "1"
    sample = {"net_input": {"src_tokens": torch.tensor([[0, i] for i in range(4)])},
              "target": torch.tensor([[0], [0], [0], [1]]), "ntokens": 8, "nsentences": 4}
    _, _, log = crit(_Linear(logits).eval(), sample)
    out = SentencePredictionCriterion.reduce_metrics([log])
    assert out["accuracy"] == 75.0 and out["f1"] == pytest.approx(100 * 6 / 7, abs=0.01)  # tp 3, fp 1
    assert SentencePredictionCriterion.build_criterion(_args("x"), None).positive == 1  # no label dictionary


def test_criterion_regression_pearson_spearman():
    from scipy import stats

    x = torch.tensor([0.1, 0.4, 0.4, 0.9, 0.3, 0.7])
    y = torch.tensor([0.0, 0.5, 0.2, 1.0, 0.3, 0.6])
    crit = SentencePredictionCriterion.build_criterion(_args("x", regression_target=True, num_classes=1), None)
    model = _Linear(x.view(-1, 1)).eval()
    logs = []
    for rows in ([0, 1, 2], [3, 4, 5]):  # two validation batches
        s = {"net_input": {"src_tokens": torch.tensor([[0, r] for r in rows])}, "target": y[rows].view(-1, 1),
             "ntokens": 6, "nsentences": 3}
        loss, n, log = crit(model, s)
        assert float(loss) == pytest.approx(float(((x[rows] - y[rows]) ** 2).sum()))
        logs.append(log)
    total = {k: sum(float(lo[k]) for lo in logs) for k in logs[0]}  # what the trainer's meters do
    out = SentencePredictionCriterion.reduce_metrics([total])
    assert out["pearson"] == pytest.approx(100 * stats.pearsonr(x, y)[0], abs=0.01)
    assert out["spearman"] == pytest.approx(100 * stats.spearmanr(x, y)[0], abs=0.01)
    assert "accuracy" not in out


@pytest.fixture()
def tiny_glue(rte, tmp_path):
    d = tmp_path / "RTE-bin"
    shutil.copytree(rte / "RTE-bin", d)
    return d


def _model_args(data, **kw):
    from fairseq import models

    a = _args(data, arch="roberta_tiny", encoder_layers=2, encoder_embed_dim=16, encoder_ffn_embed_dim=32,
              encoder_attention_heads=2, max_positions=256, dropout=0.0, attention_dropout=0.0, **kw)
    models.get_arch("roberta_tiny")(a)
    return a


def test_restore_pretrained_checkpoint_adds_new_head(tiny_glue):
    task = SentencePredictionTask.setup_task(_model_args(tiny_glue))
    model = task.build_model(_model_args(tiny_glue))
    # a "pretrained MLM" state: same encoder, no heads -> the task's head is initialised
    from fairseq import models

    mlm = models.build_model(_model_args(tiny_glue), task)
    model.load_state_dict(mlm.state_dict())
    for k, v in mlm.state_dict().items():
        assert torch.equal(model.state_dict()[k], v)
    # a checkpoint head with another number of classes is re-initialised, other heads dropped
    other = models.build_model(_model_args(tiny_glue), task)
    other.register_classification_head("sentence_classification_head", num_classes=3)
    other.register_classification_head("extra_head", num_classes=2)
    before = model.classification_heads["sentence_classification_head"].out_proj.weight.clone()
    model.load_state_dict(other.state_dict())
    assert torch.equal(model.classification_heads["sentence_classification_head"].out_proj.weight, before)
    assert "extra_head" not in model.classification_heads


def test_training_step_reduces_loss(tiny_glue):
    torch.manual_seed(0)
    args = _model_args(tiny_glue)
    task = SentencePredictionTask.setup_task(args)
    ds = task.load_dataset("valid")
    model = task.build_model(args)
    crit = task.build_criterion(argparse.Namespace(**vars(args), criterion="sentence_prediction"))
    batch = ds.collater([ds[i] for i in [1, 7, 13, 12]])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for step in range(10):
        opt.zero_grad()
        loss, n, log = task.train_step(batch, model, crit, None, step)
        opt.step()
        first = float(loss.detach()) if first is None else first
    assert float(task.valid_step(batch, model, crit)[0]) < first


def test_bad_inputs(tiny_glue, tmp_path):
    with pytest.raises(ValueError, match="--num-classes 3 does not match the 2 labels"):
        SentencePredictionTask.setup_task(_args(tiny_glue, num_classes=3))
    with pytest.raises(ValueError, match="--num-classes must be set"):
        SentencePredictionTask.setup_task(_args(tiny_glue, num_classes=-1))
    with pytest.raises(FileNotFoundError, match="nowhere/input0/dict.txt"):
        SentencePredictionTask.setup_task(_args(tmp_path / "nowhere"))
    task = SentencePredictionTask.setup_task(_args(tiny_glue))
    with pytest.raises(FileNotFoundError, match="input0/train.bin"):
        task.load_dataset("train")
    (tiny_glue / "label" / "valid.label").write_text("0.5\nabc\n")
    reg = SentencePredictionTask.setup_task(_args(tiny_glue, regression_target=True, num_classes=1))
    with pytest.raises(ValueError, match=r"valid.label:2: expected 1 float label"):
        reg.load_dataset("valid")
    crit = SentencePredictionCriterion.build_criterion(_args("x", classification_head_name="nope"), None)
    with pytest.raises(ValueError, match="no classification head 'nope'"):
        crit(_Linear(torch.zeros(4, 2)), {"net_input": {"src_tokens": torch.zeros(1, 2, dtype=torch.long)},
                                          "target": torch.zeros(1, 1, dtype=torch.long), "ntokens": 2})


def test_ids_past_the_dictionary_are_an_error_naming_the_files(tiny_glue):
    """The same start-up check as masked_lm's: an input0 dict.txt shorter than the ids in input0/valid.bin
    (a dictionary of another run) is one error naming the .bin and dict.txt, before any batch is built."""
    dict_txt = tiny_glue / "input0" / "dict.txt"
    dict_txt.write_text("".join(dict_txt.read_text().splitlines(keepends=True)[:20]))
    task = SentencePredictionTask.setup_task(_args(tiny_glue))
    with pytest.raises(ValueError, match=r"input0/valid\.bin.*input0/dict\.txt"):
        task.load_dataset("valid")
