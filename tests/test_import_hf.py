"""fairseq-import-hf: HF RobertaForMaskedLM folders (built here, random weights) give our hub the same ids
and logits, round trips are exact, and what cannot be represented is a clear error."""
import json
import sys

import pytest
import torch

from fairseq.checkpoint.files import load_checkpoint_file
from fairseq.models.roberta import RobertaModel
from fairseq_cli import export_hf, import_hf

transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors")
from safetensors.torch import load_file  # noqa: E402

TEXTS = ["Return the value of the attribute.", "  leading spaces and\ttabs", "digits 0123456789 and 2.5e-3",
         "naïve café — Straße ✓ 日本語", "a\nnew line", "x"]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def bpe_files(peer_dir, tmp_path_factory):
    """Byte-level BPE trained on the fixture text: (dir, specials-first-4 files, specials-first-5 files)."""
    from tokenizers import ByteLevelBPETokenizer

    lines = (peer_dir / "raw" / "train.txt").read_text(encoding="utf-8").split("\n")[:3000]
    out = {}
    for name, specials in (("std", ["<s>", "<pad>", "</s>", "<unk>"]), ("mask4", ["<s>", "<pad>", "</s>", "<unk>", "<mask>"])):
        d = tmp_path_factory.mktemp(f"bpe_{name}")
        tok = ByteLevelBPETokenizer()
        tok.train_from_iterator(lines, vocab_size=420, min_frequency=2, special_tokens=specials, show_progress=False)
        tok.save_model(str(d))
        out[name] = d
    return out


def make_hf(tmp_path, bpe_dir, layers, dim, heads, tied=True, zero_types=True, seed=0, layer_norm_eps=1e-5):
    """A saved HF folder: RobertaTokenizer from vocab.json/merges.txt and a randomly perturbed model."""
    tok = transformers.RobertaTokenizer(vocab=str(bpe_dir / "vocab.json"), merges=str(bpe_dir / "merges.txt"))
    cfg = transformers.RobertaConfig(vocab_size=len(tok), hidden_size=dim, num_hidden_layers=layers,
                                     num_attention_heads=heads, intermediate_size=2 * dim, max_position_embeddings=66,
                                     layer_norm_eps=layer_norm_eps, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                                     type_vocab_size=1, tie_word_embeddings=tied)
    torch.manual_seed(seed)
    model = transformers.RobertaForMaskedLM(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        if zero_types:  # as in real roberta-base, converted from fairseq
            model.roberta.embeddings.token_type_embeddings.weight.zero_()
    d = tmp_path / f"hf_{layers}_{dim}_{heads}_{int(tied)}"
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d, model, tok


def fairseq_index(tok):
    """HF id -> fairseq index, written out independently: specials 0..3, others by id, <mask> last."""
    ids = sorted(tok.get_vocab().values())
    first = [tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id]
    order = first + [i for i in ids if i not in first and i != tok.mask_token_id] + [tok.mask_token_id]
    return {h: j for j, h in enumerate(order)}, order


@pytest.mark.parametrize("layers,dim,heads,tied,zero_types,kind", [
    (2, 32, 2, True, True, "std"),       # HF ids == fairseq indices
    (3, 48, 4, False, False, "mask4"),   # <mask> at id 4 (rows permuted), untied head, token type row folded
])
def test_import_gives_identical_ids_and_logits(tmp_path, bpe_files, layers, dim, heads, tied, zero_types, kind):
    hf_dir, hf, tok = make_hf(tmp_path, bpe_files[kind], layers, dim, heads, tied, zero_types)
    out = tmp_path / "fs"
    import_hf.cli_main([str(hf_dir), str(out)])
    assert sorted(p.name for p in out.iterdir()) == ["dict.txt", "encoder.json", "model.pt", "vocab.bpe"]
    roberta = RobertaModel.from_pretrained(str(out), checkpoint_file="model.pt")
    index, order = fairseq_index(tok)
    assert (order == list(range(len(order)))) == (kind == "std")
    assert len(roberta.task.source_dictionary) == len(order) and roberta.cfg.model.encoder_layers == layers
    assert bool(roberta.cfg.model.untie_weights_roberta) == (not tied)
    batch = []
    for text in TEXTS:
        theirs = tok(text)["input_ids"]
        ours = roberta.encode(text)
        assert ours.tolist() == [index[h] for h in theirs], text
        batch.append(theirs)
    with torch.no_grad():
        width = max(map(len, batch))
        ids = torch.tensor([b + [1] * (width - len(b)) for b in batch])
        mask = ids.ne(1)
        want = hf(input_ids=ids, attention_mask=mask.long()).logits[..., order]
        got = roberta.model(torch.tensor([[index[h] for h in row] for row in ids.tolist()]))[0]
    torch.testing.assert_close(got[mask], want[mask], atol=1e-4, rtol=1e-4)
    # HF -> ours -> HF
    back = tmp_path / "back"
    export_hf.cli_main([str(out / "model.pt"), str(back), "--dict", str(out / "dict.txt"), "--bpe-dir", str(out)])
    a, b = hf.state_dict(), load_file(str(back / "model.safetensors"))
    hf2 = transformers.RobertaForMaskedLM.from_pretrained(back).eval()
    tok2 = transformers.AutoTokenizer.from_pretrained(back)
    assert [tok2(t)["input_ids"] for t in TEXTS] == [[index[h] for h in tok(t)["input_ids"]] for t in TEXTS]
    if kind == "std":  # identical tensors
        for k, v in b.items():
            assert torch.equal(v, a[k]), k
        assert tok2.get_vocab() == tok.get_vocab()
    else:
        with torch.no_grad():
            got2 = hf2(input_ids=torch.tensor([[index[h] for h in row] for row in ids.tolist()]),
                       attention_mask=mask.long()).logits
        torch.testing.assert_close(got2[mask], want[mask], atol=1e-4, rtol=1e-4)


def test_fairseq_to_hf_to_fairseq_is_exact(peer_dir, tmp_path):
    """The fixture (dict.txt without every BPE token: export adds <unk> aliases) comes back tensor-equal."""
    fixture = peer_dir / "checkpoint_last.no-optimizer-state.pt"
    export_hf.cli_main([str(fixture), str(tmp_path / "hf"), "--dict", str(peer_dir / "data-bin" / "dict.txt"),
                        "--tokenizer-json", str(peer_dir / "tokenizer.json")])
    info = import_hf.import_hf(tmp_path / "hf", tmp_path / "fs")
    assert info["dropped_alias_rows"] > 0 and not info["permuted"]
    a = load_checkpoint_file(str(fixture))["model"]
    b = load_checkpoint_file(str(tmp_path / "fs" / "model.pt"))["model"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    orig = RobertaModel.from_pretrained(str(peer_dir), checkpoint_file=fixture.name, data_name_or_path="./data-bin",
                                        bpe_tokenizer_json=str(peer_dir / "tokenizer.json"))
    new = RobertaModel.from_pretrained(str(tmp_path / "fs"), checkpoint_file="model.pt")
    lines = (peer_dir / "raw" / "valid.txt").read_text(encoding="utf-8").split("\n")[:50] + TEXTS
    for line in lines:
        assert new.encode(line).tolist() == orig.encode(line).tolist(), line


def _edit_config(d, **kw):
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(kw)
    (d / "config.json").write_text(json.dumps(cfg))


def test_unsupported_models_are_clear_errors(tmp_path, bpe_files):
    hf_dir, hf, tok = make_hf(tmp_path, bpe_files["std"], 2, 16, 2)
    for edit, msg in (({"model_type": "bert"}, "model_type 'bert': only 'roberta'"),
                      ({"position_embedding_type": "relative_key"}, "position_embedding_type 'relative_key'"),
                      ({"layer_norm_eps": 0}, "layer_norm_eps 0: must be positive"),
                      ({"hidden_act": "relu"}, "hidden_act 'relu'")):
        bad = tmp_path / f"bad_{list(edit)[0]}"
        bad.mkdir()
        for f in hf_dir.iterdir():
            (bad / f.name).write_bytes(f.read_bytes())
        _edit_config(bad, **edit)
        with pytest.raises(SystemExit) as e:
            import_hf.cli_main([str(bad), str(tmp_path / "o")])
        assert str(e.value.code).startswith("fairseq-import-hf: error: ") and msg in str(e.value.code)
    from safetensors.torch import save_file
    sd = {k: v.clone() for k, v in load_file(str(hf_dir / "model.safetensors")).items()}
    sd["roberta.embeddings.token_type_embeddings.weight"] = torch.randn(2, 16)
    save_file(sd, str(hf_dir / "model.safetensors"))
    with pytest.raises(ValueError, match="token type embeddings beyond type 0 are non-zero"):
        import_hf.import_hf(hf_dir, tmp_path / "o")
    with pytest.raises(FileNotFoundError, match="HF_DIR not found"):
        import_hf.import_hf(tmp_path / "missing", tmp_path / "o")


@pytest.mark.e2e_scripts
@pytest.mark.slow
def test_continue_pretraining_recipe_runs_from_an_hf_model(tmp_path, bpe_files, peer_dir):
    """examples/sctd/continue_pretraining.sh, shrunk by env vars: HF folder -> import -> binarize with its
    dict.txt (and its BPE) -> 3 ScTD updates restored from it -> HF export that transformers loads with our
    logits. TOKENS_PER_SAMPLE is left at its default (512): it is lowered to the model's 64 positions, with a
    note; paths given with a trailing slash print without a `//`."""
    import os
    import subprocess
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    hf_dir, _, _ = make_hf(tmp_path, bpe_files["std"], 4, 32, 2)
    text = tmp_path / "text"
    text.mkdir()
    raw = (peer_dir / "raw" / "train.txt").read_text(encoding="utf-8").split("\n")
    (text / "train.txt").write_text("\n".join(raw[:200]) + "\n", encoding="utf-8")
    (text / "valid.txt").write_text("\n".join(raw[200:240]) + "\n", encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(repo), MAX_UPDATE="3", WARMUP_UPDATES="1", BATCH_SIZE="4", UPDATE_FREQ="1",
               WORKERS="1", SAVE_INTERVAL_UPDATES="0", SCTD_INTERVAL="2", OMP_NUM_THREADS="1",
               PYTHON=sys.executable)
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(repo / "examples" / "sctd" / "continue_pretraining.sh"), f"{hf_dir}/",
                           f"{text}/", f"{out}/"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"note: {out}/model/model.pt has 64 positions: --tokens-per-sample 64 (not 512)" in proc.stderr
    assert "//" not in proc.stdout.replace("://", "") + proc.stderr.replace("://", "")
    logs = [json.loads(line.split(" | ", 3)[3]) for line in (out / "train.log").read_text().splitlines()
            if " | train | " in line]
    assert logs and int(logs[-1]["train_num_updates"]) == 3 and "train_sctd_kl_local" in logs[-1]
    imported = load_checkpoint_file(str(out / "model" / "model.pt"))["model"]
    trained = load_checkpoint_file(str(out / "checkpoints" / "checkpoint_last.pt"))
    assert trained["model"].keys() == imported.keys()
    assert trained["cfg"]["model"]["token_drop"] == 0.5
    hf2 = transformers.RobertaForMaskedLM.from_pretrained(out / "hf").eval()
    # the BPE is in data-bin: the hub needs nothing else (the line the script prints at the end)
    roberta = RobertaModel.from_pretrained(str(out / "checkpoints"), checkpoint_file="checkpoint_last.pt",
                                           data_name_or_path=str(out / "data-bin"))
    x = roberta.encode("Return the value of the attribute.").unsqueeze(0)
    with torch.no_grad():
        torch.testing.assert_close(hf2(input_ids=x).logits, roberta.model(x)[0], atol=1e-4, rtol=1e-4)


def test_hf_layer_norm_eps_1e12_imports_and_round_trips(tmp_path, bpe_files):
    """HF's RobertaConfig default layer_norm_eps=1e-12 becomes the model's --layer-norm-eps: HF's logits within
    1e-4 (with embeddings small enough that the epsilon matters: 1e-5 would be off), and back out in config.json."""
    hf_dir, hf, tok = make_hf(tmp_path, bpe_files["std"], 2, 32, 2, layer_norm_eps=1e-12)
    with torch.no_grad():  # tiny embeddings: the embedding LayerNorm's variance is near the epsilons
        for emb in (hf.roberta.embeddings.word_embeddings, hf.roberta.embeddings.position_embeddings):
            emb.weight.mul_(0.01)
    hf.save_pretrained(hf_dir)
    out = tmp_path / "fs"
    import_hf.cli_main([str(hf_dir), str(out)])
    roberta = RobertaModel.from_pretrained(str(out), checkpoint_file="model.pt")
    assert roberta.cfg.model.layer_norm_eps == 1e-12
    assert roberta.model.encoder.sentence_encoder.layers[0].final_layer_norm.eps == 1e-12
    index, order = fairseq_index(tok)
    ids = torch.tensor([tok(TEXTS[0])["input_ids"]])
    with torch.no_grad():
        want = hf(input_ids=ids).logits[..., order]
        got = roberta.model(torch.tensor([[index[h] for h in ids[0].tolist()]]))[0]
        wrong_eps = RobertaModel.from_pretrained(str(out), checkpoint_file="model.pt", layer_norm_eps=1e-5)
        off = wrong_eps.model(torch.tensor([[index[h] for h in ids[0].tolist()]]))[0]
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    assert (off - want).abs().max() > 1e-3  # 10x the tolerance: the epsilon really matters here
    back = tmp_path / "back"
    export_hf.cli_main([str(out / "model.pt"), str(back), "--dict", str(out / "dict.txt"), "--bpe-dir", str(out)])
    assert json.loads((back / "config.json").read_text())["layer_norm_eps"] == 1e-12
    hf2 = transformers.RobertaForMaskedLM.from_pretrained(back).eval()
    with torch.no_grad():
        torch.testing.assert_close(hf2(input_ids=ids).logits, hf(input_ids=ids).logits, atol=1e-5, rtol=1e-5)
