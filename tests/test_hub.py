"""RobertaModel.from_pretrained / RobertaHubInterface on the fairseq fixture checkpoint."""
import os

import numpy as np
import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from fairseq.models.roberta import RobertaModel, fairseq_compatible_state_dict

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: tiny models, busy cores


@pytest.fixture(scope="module")
def model_dir(peer_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("roberta_hub")
    os.symlink(peer_dir / "checkpoint_last.no-optimizer-state.pt", d / "model.pt")
    os.symlink(peer_dir / "data-bin" / "dict.txt", d / "dict.txt")
    os.symlink(peer_dir / "tokenizer.json", d / "tokenizer.json")
    return d


@pytest.fixture(scope="module")
def roberta(model_dir):
    return RobertaModel.from_pretrained(str(model_dir), checkpoint_file="model.pt")


def test_extract_features_matches_fairseq(roberta, peer_dir):
    z = np.load(peer_dir / "reference" / "model_outputs_batchB.npz")  # batch B has no padding
    assert not roberta.model.training and len(roberta.task.source_dictionary) == 7713
    with torch.no_grad():
        feats = roberta.extract_features(torch.from_numpy(z["src_tokens"][3]))
        layers = roberta.extract_features(torch.from_numpy(z["src_tokens"][:2]), return_all_hiddens=True)
    np.testing.assert_allclose(feats[0].numpy(), z["features"][3], atol=1e-5, rtol=0)
    assert len(layers) == 5 and layers[-1].shape == (2, 111, 128)
    np.testing.assert_allclose(layers[-1].numpy(), z["features"][:2], atol=1e-5, rtol=0)


def test_encode_matches_fairseq_bpe_and_decodes(roberta, peer_dir):
    text = (peer_dir / "raw" / "valid.txt").read_text(encoding="utf-8").split("\n")[0]
    bpe_ids = (peer_dir / "bpe" / "valid.bpe").read_text(encoding="utf-8").split("\n")[0].split()
    d = roberta.task.source_dictionary
    tokens = roberta.encode(text)
    assert tokens.tolist() == [0] + [d.index(t) for t in bpe_ids] + [2]
    assert roberta.decode(tokens) == text
    pair = roberta.encode("Hello there.", "General Kenobi.")
    assert pair[0] == 0 and pair.tolist().count(2) == 3  # <s> A </s> </s> B </s>
    assert roberta.decode(pair) == ["Hello there.", "General Kenobi."]


def test_fill_mask(roberta):
    out = roberta.fill_mask("Return the value of the <mask> attribute.", topk=3)
    assert len(out) == 3
    probs = [p for _, p, _ in out]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-6
    for filled, _, token in out:
        assert "<mask>" not in filled and filled.startswith("Return the value of the")
        assert token.strip() in filled
    with pytest.raises(ValueError, match="exactly one <mask>"):
        roberta.fill_mask("no mask here")


def test_classification_head_predict(roberta):
    roberta.register_classification_head("demo", num_classes=3)
    tokens = roberta.encode("A short sentence.")
    lp = roberta.predict("demo", tokens)
    logits = roberta.predict("demo", tokens, return_logits=True)
    assert lp.shape == (1, 3)
    torch.testing.assert_close(lp, torch.log_softmax(logits, -1))
    torch.testing.assert_close(lp.exp().sum(), torch.tensor(1.0))
    with pytest.raises(ValueError, match="exceeds maximum length"):
        roberta.extract_features(torch.zeros(129, dtype=torch.long))


def test_our_checkpoint_format_loads_weights_only(roberta, model_dir, tmp_path):
    """A checkpoint whose cfg['model'] is a plain dict (ours) loads; fairseq-style keys are accepted."""
    args = OmegaConf.to_container(roberta.cfg.model)
    torch.save({"args": None, "cfg": {"model": args}, "model": fairseq_compatible_state_dict(roberta.model)},
               tmp_path / "ours.pt")
    os.symlink(model_dir / "dict.txt", tmp_path / "dict.txt")
    r2 = RobertaModel.from_pretrained(str(tmp_path), checkpoint_file="ours.pt", dropout=0.3)
    assert r2.cfg.model.dropout == 0.3 and r2.bpe.tok is None
    x = torch.tensor([[0, 10, 20, 30, 2]])
    torch.testing.assert_close(r2.extract_features(x), roberta.extract_features(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="no BPE known"):
        r2.encode("hello")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        RobertaModel.from_pretrained(str(tmp_path), checkpoint_file="missing.pt")
    assert isinstance(roberta.cfg, DictConfig)  # fairseq's: groups, not a flat Namespace
    assert roberta.cfg.model.encoder_layers == 4 and roberta.cfg.task._name == "masked_lm"
    assert roberta.cfg.common.seed == roberta.cfg.model.seed and roberta.cfg.task.tokens_per_sample == 128


# fairseq's examples/roberta/README.glue.md evaluation snippet, verbatim.
GLUE_SNIPPET = """
from fairseq.models.roberta import RobertaModel

roberta = RobertaModel.from_pretrained(
    'checkpoints/',
    checkpoint_file='checkpoint_best.pt',
    data_name_or_path='RTE-bin'
)

label_fn = lambda label: roberta.task.label_dictionary.string(
    [label + roberta.task.label_dictionary.nspecial]
)
ncorrect, nsamples = 0, 0
roberta.cuda()
roberta.eval()
with open('glue_data/RTE/dev.tsv') as fin:
    fin.readline()
    for index, line in enumerate(fin):
        tokens = line.strip().split('\\t')
        sent1, sent2, target = tokens[1], tokens[2], tokens[3]
        tokens = roberta.encode(sent1, sent2)
        prediction = roberta.predict('sentence_classification_head', tokens).argmax().item()
        prediction_label = label_fn(prediction)
        ncorrect += int(prediction_label == target)
        nsamples += 1
print('| Accuracy: ', float(ncorrect)/float(nsamples))
"""

TINY_RTE = ("--arch roberta_base --encoder-layers 2 --encoder-embed-dim 32 --encoder-ffn-embed-dim 64 "
            "--encoder-attention-heads 2 --max-positions 512 --task sentence_prediction --num-classes 2 "
            "--criterion sentence_prediction --init-token 0 --separator-token 2 --batch-size 16 --max-update 4 "
            "--lr 1e-3 --optimizer adam --cpu --log-format none --no-epoch-checkpoints "
            "--best-checkpoint-metric accuracy --maximize-best-checkpoint-metric --save-dir checkpoints")


@pytest.mark.e2e_scripts
@pytest.mark.slow
def test_glue_readme_snippet_runs_as_written(peer_dir, shared_dir, tmp_path, monkeypatch, capsys):
    """A tiny RTE model fine-tuned here; fairseq's snippet gets the task's label dictionary and head (and the
    BPE that fairseq-glue-prep put in RTE-bin: nothing copied by hand) and its accuracy equals fairseq-validate's
    on the same dev set."""
    from fairseq import options
    from fairseq_cli import glue_prep, train, validate

    monkeypatch.chdir(tmp_path)
    os.symlink(shared_dir / "data" / "glue", tmp_path / "glue_data")
    glue_prep.cli_main(["--task", "RTE", "--glue-dir", "glue_data", "--dict", str(peer_dir / "data-bin" / "dict.txt"),
                        "--tokenizer-json", str(peer_dir / "tokenizer.json"), "--out", "RTE-bin"])
    torch.manual_seed(0)
    train.main(options.parse_args_and_arch(options.get_training_parser(), ["RTE-bin"] + TINY_RTE.split()))
    capsys.readouterr()
    scope = {}
    exec(compile(GLUE_SNIPPET, "README.glue.md", "exec"), scope)
    printed = capsys.readouterr().out
    roberta = scope["roberta"]
    assert roberta.task.label_dictionary.symbols[4:6] in (["entailment", "not_entailment"],
                                                          ["not_entailment", "entailment"])
    assert scope["nsamples"] == 277 and printed.splitlines()[-1].startswith("| Accuracy: ")
    (res,) = validate.main(validate.parse_args(["RTE-bin", "--path", "checkpoints/checkpoint_best.pt",
                                                "--task", "sentence_prediction", "--batch-size", "16"]))
    assert round(100.0 * scope["ncorrect"] / scope["nsamples"], 1) == res["accuracy"]


def test_data_name_or_path_follows_fairseqs_rule(model_dir, tmp_path, monkeypatch):
    """'.'-prefixed paths are relative to the model folder; others are used as given (cwd-relative)."""
    from fairseq.hub_utils import resolve_data_dir

    assert resolve_data_dir("/m", ".") == "/m" and resolve_data_dir("/m", "./d") == "/m/d"
    assert resolve_data_dir("/m", "d") == "d" and resolve_data_dir("/m", "/abs/d") == "/abs/d"
    (tmp_path / "data-bin").mkdir()
    os.symlink(model_dir / "dict.txt", tmp_path / "data-bin" / "dict.txt")
    monkeypatch.chdir(tmp_path)
    r = RobertaModel.from_pretrained(str(model_dir), checkpoint_file="model.pt", data_name_or_path="data-bin")
    assert r.cfg.task.data == "data-bin" and len(r.task.source_dictionary) == 7713
    with pytest.raises(FileNotFoundError, match="elsewhere/dict.txt"):
        RobertaModel.from_pretrained(str(model_dir), checkpoint_file="model.pt", data_name_or_path="elsewhere")


def test_fill_mask_replaces_the_space_before_the_mask_as_fairseq(roberta):
    """fairseq's rule: ' <mask>' (with its space) is replaced by the decoded token whether or not that token
    starts with a space; a mask without a space before it is replaced alone."""
    text = "Return the value of the <mask> attribute."
    out = roberta.fill_mask(text, topk=20)
    assert any(not token.startswith(" ") for _, _, token in out)  # the case where the two rules differ
    for filled, _, token in out:
        assert filled == text.replace(" <mask>", token)
    glued = "Return the value of the<mask> attribute."
    for filled, _, token in roberta.fill_mask(glued, topk=5):
        assert filled == glued.replace("<mask>", token)


def test_load_model_ensemble_and_task(roberta, model_dir):
    from fairseq import checkpoint_utils

    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task(
        [str(model_dir / "model.pt")], arg_overrides={"data": str(model_dir), "dropout": 0.2})
    assert len(models) == 1 and isinstance(cfg, DictConfig)
    assert cfg.model.dropout == 0.2 and cfg.task.data == str(model_dir) and cfg.task._name == "masked_lm"
    assert type(task).__name__ == "MaskedLMTask" and len(task.source_dictionary) == 7713
    x = torch.tensor([[0, 10, 20, 30, 2]])
    with torch.no_grad():
        torch.testing.assert_close(models[0].eval()(x, features_only=True)[0], roberta.extract_features(x),
                                   rtol=0, atol=0)
