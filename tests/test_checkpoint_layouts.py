"""Every RoBERTa checkpoint layout fairseq 0.9-0.12 writes loads through every entry point.

The fixture (fairseq 0.12.2) is rewritten here into the layout of the released 2019 roberta.base /
roberta.large model.pt files: `args` Namespace and no `cfg`, `decoder.*` keys, `emb_layer_norm`, fused
`self_attn.in_proj_weight/bias`, no `_name`, fp16 weights are not used (the fixture is fp32, so outputs
must be *identical*), saved in torch's legacy (pre-zip) format as torch 1.1 did. A hydra-style cfg
(model dict with only `_name`, task settings under cfg['task']) is checked too.
"""
import argparse
import json
from collections import OrderedDict

import pytest
import torch

from fairseq.checkpoint.files import load_checkpoint_file
from fairseq.models.roberta import RobertaModel
from fairseq_cli import export_hf, train, validate

FIXTURE = "checkpoint_last.no-optimizer-state.pt"
BT = ("in_proj_weight", "in_proj_bias", "out_proj_weight", "out_proj_bias", "fc1_weight", "fc1_bias",
      "fc2_weight", "fc2_bias")


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def _raw(path):
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(path, map_location="cpu", weights_only=True)


def to_2019_layout(state):
    """fairseq 0.12 state -> the layout of the 2019 releases (see module doc)."""
    args = argparse.Namespace(**{k: v for k, v in vars(state["cfg"]["model"]).items() if k != "_name"})
    sd = OrderedDict()
    model = state["model"]
    for k, v in model.items():
        leaf = k.rsplit(".", 1)[-1]
        if k.endswith(".version") or (leaf in BT and k.count(".") == 4):
            continue  # fairseq 0.12's zero BetterTransformer copies did not exist in 2019
        if ".self_attn.k_proj." in k or ".self_attn.v_proj." in k:
            continue
        if ".self_attn.q_proj." in k:
            kind = leaf
            base = k[: k.index(".self_attn.") + len(".self_attn.")]
            fused = torch.cat([model[f"{base}{p}.{kind}"] for p in ("q_proj", "k_proj", "v_proj")])
            k, v = f"{base}in_proj_{kind}", fused
        k = "decoder." + k[len("encoder."):]
        sd[k.replace(".layernorm_embedding.", ".emb_layer_norm.")] = v
    return {"args": args, "model": sd, "optimizer_history": state["optimizer_history"],
            "extra_state": {k: state["extra_state"][k] for k in ("train_iterator", "val_loss")}}


@pytest.fixture(scope="module")
def layouts(peer_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("layouts")
    new = peer_dir / FIXTURE
    state = _raw(new)
    old = d / "roberta2019.pt"
    torch.save(to_2019_layout(state), old, _use_new_zipfile_serialization=False)
    hydra = d / "hydra.pt"
    cfg = dict(state["cfg"])
    margs = {k: v for k, v in vars(cfg["model"]).items()
             if k in ("encoder_layers", "encoder_embed_dim", "encoder_ffn_embed_dim", "encoder_attention_heads",
                      "max_positions", "dropout", "attention_dropout")}
    cfg["model"] = dict(margs, _name="roberta")  # as fairseq-hydra-train writes it: no arch, no task keys
    torch.save(dict(state, cfg=cfg), hydra)
    return {"new": new, "old": old, "hydra": hydra}


def test_2019_layout_is_really_old(layouts):
    raw = _raw(layouts["old"])
    assert "cfg" not in raw and isinstance(raw["args"], argparse.Namespace) and not hasattr(raw["args"], "_name")
    assert "decoder.sentence_encoder.emb_layer_norm.weight" in raw["model"]
    assert raw["model"]["decoder.sentence_encoder.layers.0.self_attn.in_proj_weight"].shape == (384, 128)
    assert not any(".q_proj." in k or k.startswith("encoder.") for k in raw["model"])
    with open(layouts["old"], "rb") as f:
        assert f.read(2) != b"PK"  # legacy (pre-zip) serialization


def test_upgraded_state_equals_fixture(layouts):
    new, old = (load_checkpoint_file(str(layouts[k])) for k in ("new", "old"))
    want = {k: v for k, v in new["model"].items()
            if not k.endswith(".version") and not (k.rsplit(".", 1)[-1] in BT and k.count(".") == 4)}
    got = old["model"]
    assert got.keys() == want.keys()
    for k in want:
        assert torch.equal(got[k], want[k]), k
    assert old["cfg"]["model"].arch == "roberta_base"


@pytest.mark.parametrize("layout", ["old"])
def test_validate_reproduces_fairseqs_loss(peer_dir, layouts, layout):
    args = validate.parse_args([str(peer_dir / "data-bin"), "--path", str(layouts[layout]), "--task", "masked_lm",
                                "--batch-size", "32", "--log-format", "simple"])
    assert args.tokens_per_sample == 128 and args.encoder_layers == 4
    (res,) = validate.main(args)
    assert res["loss"] == 10.306


def test_from_pretrained_features_identical(peer_dir, layouts, tmp_path):
    x = torch.tensor([[0, 10, 20, 30, 40, 2], [0, 5, 6, 7, 2, 1]])
    feats = []
    for name in ("new", "old", "hydra"):
        hub = RobertaModel.from_pretrained(str(layouts[name].parent if name != "new" else peer_dir),
                                           checkpoint_file=layouts[name].name,
                                           data_name_or_path=str(peer_dir / "data-bin"))
        with torch.no_grad():
            feats.append((hub.extract_features(x), hub.model(x)[0]))
    for f, logits in feats[1:]:
        assert torch.equal(f, feats[0][0]) and torch.equal(logits, feats[0][1])


@pytest.mark.parametrize("flag", ["--restore-file", "--finetune-from-model"])
def test_training_starts_from_identical_weights(peer_dir, layouts, tmp_path, flag):
    """One update (dropout 0) from the 2019 file equals one update from the 0.12 file, bit for bit."""
    params = []
    for name in ("new", "old"):
        argv = [str(peer_dir / "data-bin"), "--arch", "roberta_base", "--task", "masked_lm", "--criterion",
                "masked_lm", "--encoder-layers", "4", "--encoder-embed-dim", "128", "--encoder-ffn-embed-dim",
                "512", "--encoder-attention-heads", "4", "--tokens-per-sample", "128", "--max-positions", "128",
                "--sample-break-mode", "complete", "--batch-size", "4", "--dropout", "0", "--attention-dropout",
                "0", "--lr", "1e-4", "--optimizer", "adam", "--max-update", "1", "--disable-validation", "--no-save", "--cpu",
                "--log-format", "none", "--save-dir", str(tmp_path / name), flag, str(layouts[name])]
        if flag == "--restore-file":
            argv += ["--reset-optimizer", "--reset-dataloader"]
        trainer = train.main(train.options.parse_args_and_arch(train.options.get_training_parser(), argv))
        assert trainer.num_updates == 1
        params.append({k: v.detach().clone() for k, v in trainer.model.state_dict().items()})
    assert params[0].keys() == params[1].keys()
    for k in params[0]:
        assert torch.equal(params[0][k], params[1][k]), k


def test_export_hf_identical(peer_dir, layouts, tmp_path):
    from safetensors.torch import load_file

    transformers = pytest.importorskip("transformers")
    outs = []
    for name in ("new", "old"):
        out = tmp_path / name
        export_hf.cli_main([str(layouts[name]), str(out), "--dict", str(peer_dir / "data-bin" / "dict.txt"),
                            "--tokenizer-json", str(peer_dir / "tokenizer.json")])
        outs.append(out)
    a, b = (load_file(str(o / "model.safetensors")) for o in outs)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((outs[0] / "config.json").read_text()) == json.loads((outs[1] / "config.json").read_text())
    x = torch.tensor([[0, 10, 20, 30, 40, 2]])
    logits = [transformers.RobertaForMaskedLM.from_pretrained(o).eval()(input_ids=x).logits for o in outs]
    assert torch.equal(logits[0], logits[1])
    with torch.no_grad():
        ours = RobertaModel.from_pretrained(str(peer_dir), checkpoint_file=FIXTURE,
                                            data_name_or_path=str(peer_dir / "data-bin")).model(x)[0]
    torch.testing.assert_close(logits[1][..., :ours.size(-1)], ours, atol=1e-4, rtol=1e-4)


def test_unsupported_layouts_are_clear_errors(peer_dir, tmp_path):
    state = to_2019_layout(_raw(peer_dir / FIXTURE))
    state["args"].encoder_layers_to_keep = "0,2"
    torch.save(state, tmp_path / "pruned.pt")
    with pytest.raises(ValueError, match="encoder_layers_to_keep"):
        load_checkpoint_file(str(tmp_path / "pruned.pt"))
    state = to_2019_layout(_raw(peer_dir / FIXTURE))
    del state["args"]
    torch.save(state, tmp_path / "noargs.pt")
    with pytest.raises(ValueError, match="neither cfg nor args"):
        load_checkpoint_file(str(tmp_path / "noargs.pt"))


def test_2019_classification_head_loads_in_the_hub(peer_dir, tmp_path):
    """A 2019-layout file with a head (roberta.large.mnli style) registers and uses it."""
    state = to_2019_layout(_raw(peer_dir / FIXTURE))
    g = torch.Generator().manual_seed(0)
    head = {"dense.weight": torch.randn(128, 128, generator=g), "dense.bias": torch.randn(128, generator=g),
            "out_proj.weight": torch.randn(3, 128, generator=g), "out_proj.bias": torch.randn(3, generator=g)}
    for k, v in head.items():
        state["model"][f"classification_heads.mnli.{k}"] = v
    torch.save(state, tmp_path / "model.pt", _use_new_zipfile_serialization=False)
    hub = RobertaModel.from_pretrained(str(tmp_path), data_name_or_path=str(peer_dir / "data-bin"))
    x = torch.tensor([[0, 10, 20, 30, 2]])
    with torch.no_grad():
        cls = hub.extract_features(x)[:, 0]
        want = torch.tanh(cls @ head["dense.weight"].T + head["dense.bias"]) @ head["out_proj.weight"].T \
            + head["out_proj.bias"]
        torch.testing.assert_close(hub.predict("mnli", x, return_logits=True), want)
