"""Export a fairseq RoBERTa checkpoint (ours or real fairseq 0.12.2) to a Hugging Face folder.

    fairseq-export-hf CHECKPOINT OUTDIR [--dict dict.txt] [--bpe-dir DIR | --tokenizer-json F]
                      [--classification-head NAME | --mlm-only] [--label-dict label/dict.txt]

Writes config.json (RobertaConfig) and model.safetensors with transformers' parameter names,
so `RobertaForMaskedLM` / `RobertaForSequenceClassification.from_pretrained(OUTDIR)` work without
fairseq installed. transformers is not imported here (only torch and safetensors).

Tokenizer: fairseq dictionary indices are not BPE ids (dict.txt lists BPE ids as strings, ordered
by frequency), so the exported vocabulary maps every BPE token string to its fairseq index, with
<s>,<pad>,</s>,<unk> at 0..3 and <mask> at len(dict). BPE tokens absent from dict.txt are <unk>
to fairseq; HF tokenizers cannot give many tokens one id (merges are keyed by id), so they get
extra ids len(dict)+1.. whose embedding rows copy <unk> and whose LM bias is -1e4: the encoder
sees exactly what fairseq sees, logits[..., :len(dict)+1] equal fairseq's, and config.json records
`fairseq_vocab_size`. With a dictionary covering the BPE vocabulary (RoBERTa's GPT-2 dict.txt)
there are no such ids and vocab_size = len(dict)+1.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import torch

from fairseq import atomic_files
from fairseq.checkpoint.files import load_checkpoint_file
from fairseq.data.dictionary import Dictionary
from fairseq.logging.progress_bar import setup_logging

logger = logging.getLogger("fairseq_cli.export_hf")

ENC = "encoder.sentence_encoder."
SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")
DEFAULT_HEAD = "sentence_classification_head"
_ACT = {"gelu": "gelu", "relu": "relu", "gelu_accurate": "gelu_new", "gelu_fast": "gelu_new", "tanh": "tanh"}


def load_checkpoint(path: str | os.PathLike) -> dict:
    """The one checkpoint reader (fairseq.checkpoint): clear errors for missing, truncated or foreign files;
    every fairseq 0.9-0.12 layout comes back in 0.12's (fairseq/checkpoint/upgrade.py)."""
    return load_checkpoint_file(str(path))


def model_cfg(state: dict) -> dict:
    """The flat model arguments of a checkpoint, whether cfg['model'] is a dict or a Namespace."""
    cfg = state.get("cfg") or {}
    m = cfg.get("model") if isinstance(cfg, dict) else None
    if m is None and state.get("args") is not None:
        m = state["args"]
    if isinstance(m, argparse.Namespace):
        m = vars(m)
    return dict(m or {})


def read_dict_symbols(path: str | os.PathLike) -> list[str]:
    """Symbols of a fairseq dict.txt by index (specials first)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--dict file not found: {path}")
    return list(Dictionary.load(str(path)).symbols)


def _layer_count(sd: dict) -> int:
    n = 0
    while f"{ENC}layers.{n}.fc1.weight" in sd:
        n += 1
    if n == 0:
        raise ValueError("checkpoint has no encoder layers (expected encoder.sentence_encoder.layers.0.*)")
    return n


def pick_head(sd: dict, name: str | None, mlm_only: bool) -> str | None:
    heads = sorted({k.split(".")[1] for k in sd if k.startswith("classification_heads.")})
    if mlm_only:
        return None
    if name is not None:
        if name not in heads:
            raise ValueError(f"--classification-head {name!r} not in checkpoint; heads present: {heads or 'none'}")
        return name
    if not heads:
        return None
    if len(heads) == 1:
        return heads[0]
    if DEFAULT_HEAD in heads:
        return DEFAULT_HEAD
    raise ValueError(f"checkpoint has several classification heads {heads}; pick one with --classification-head")


def convert_state_dict(sd: dict, head: str | None = None) -> tuple[dict, bool]:
    """fairseq names -> transformers names. Returns (tensors, tied) with fresh contiguous copies."""
    out: dict[str, torch.Tensor] = {}

    def put(dst, src):
        if src not in sd:
            raise ValueError(f"checkpoint is missing parameter {src!r}")
        out[dst] = sd[src].detach().to(torch.float32).contiguous().clone()

    put("roberta.embeddings.word_embeddings.weight", ENC + "embed_tokens.weight")
    put("roberta.embeddings.position_embeddings.weight", ENC + "embed_positions.weight")
    put("roberta.embeddings.LayerNorm.weight", ENC + "layernorm_embedding.weight")
    put("roberta.embeddings.LayerNorm.bias", ENC + "layernorm_embedding.bias")
    dim = out["roberta.embeddings.word_embeddings.weight"].shape[1]
    # fairseq has no segment embeddings; HF always adds token_type_embeddings[0], so make it zero.
    out["roberta.embeddings.token_type_embeddings.weight"] = torch.zeros(1, dim)
    pairs = [
        ("attention.self.query", "self_attn.q_proj"),
        ("attention.self.key", "self_attn.k_proj"),
        ("attention.self.value", "self_attn.v_proj"),
        ("attention.output.dense", "self_attn.out_proj"),
        ("attention.output.LayerNorm", "self_attn_layer_norm"),
        ("intermediate.dense", "fc1"),
        ("output.dense", "fc2"),
        ("output.LayerNorm", "final_layer_norm"),
    ]
    for i in range(_layer_count(sd)):
        for hf, fs in pairs:
            for p in ("weight", "bias"):
                put(f"roberta.encoder.layer.{i}.{hf}.{p}", f"{ENC}layers.{i}.{fs}.{p}")
    lm = "encoder.lm_head."
    for hf, fs in (("lm_head.dense", "dense"), ("lm_head.layer_norm", "layer_norm")):
        for p in ("weight", "bias"):
            put(f"{hf}.{p}", lm + fs + "." + p)
    put("lm_head.bias", lm + "bias")
    put("lm_head.decoder.bias", lm + "bias")  # transformers 5 applies the decoder's own bias when untied
    tied = True
    if lm + "weight" in sd and not torch.equal(sd[lm + "weight"], sd[ENC + "embed_tokens.weight"]):
        tied = False  # --untie-weights-roberta
        put("lm_head.decoder.weight", lm + "weight")
    if head is not None:
        for hf, fs in (("classifier.dense", "dense"), ("classifier.out_proj", "out_proj")):
            for p in ("weight", "bias"):
                put(f"{hf}.{p}", f"classification_heads.{head}.{fs}.{p}")
    return out, tied


def build_config(sd: dict, margs: dict, head: str | None, tied: bool, label_names: list[str] | None) -> dict:
    vocab, dim = sd[ENC + "embed_tokens.weight"].shape
    heads = margs.get("encoder_attention_heads")
    if heads is None:
        raise ValueError("checkpoint cfg has no encoder_attention_heads; cannot write config.json")
    act = margs.get("activation_fn", "gelu")
    if act not in _ACT:
        raise ValueError(f"activation_fn {act!r} has no transformers equivalent (known: {', '.join(_ACT)})")
    cfg = {
        "architectures": ["RobertaForMaskedLM"],
        "model_type": "roberta",
        "vocab_size": int(vocab),
        "hidden_size": int(dim),
        "num_hidden_layers": _layer_count(sd),
        "num_attention_heads": int(heads),
        "intermediate_size": int(sd[ENC + "layers.0.fc1.weight"].shape[0]),
        "hidden_act": _ACT[act],
        "hidden_dropout_prob": float(margs.get("dropout", 0.1)),
        "attention_probs_dropout_prob": float(margs.get("attention_dropout", 0.1)),
        "max_position_embeddings": int(sd[ENC + "embed_positions.weight"].shape[0]),
        "type_vocab_size": 1,
        "initializer_range": 0.02,
        # fairseq's own checkpoints have no such setting: their LayerNorms use 1e-5
        "layer_norm_eps": float(margs.get("layer_norm_eps") or 1e-5),
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "position_embedding_type": "absolute",
        "tie_word_embeddings": tied,
        "torch_dtype": "float32",
    }
    if head is not None:
        num = int(sd[f"classification_heads.{head}.out_proj.weight"].shape[0])
        cfg["architectures"] = ["RobertaForSequenceClassification"]
        cfg["classifier_dropout"] = float(margs.get("pooler_dropout", 0.0))
        if label_names is None or len(label_names) != num:
            label_names = [f"LABEL_{i}" for i in range(num)]
        cfg["id2label"] = {str(i): n for i, n in enumerate(label_names)}
        cfg["label2id"] = {n: i for i, n in enumerate(label_names)}
        cfg["problem_type"] = "regression" if num == 1 else "single_label_classification"
    return cfg


def _bpe_source(bpe_dir: str | None, tokenizer_json: str | None) -> tuple[dict, list[tuple[str, str]], dict | None]:
    """(token -> BPE id, merges, pre_tokenizer json or None) from encoder.json+vocab.bpe or tokenizer.json."""
    if bpe_dir is not None:
        enc, merges_path = Path(bpe_dir) / "encoder.json", Path(bpe_dir) / "vocab.bpe"
        for p in (enc, merges_path):
            if not p.is_file():
                raise FileNotFoundError(f"--bpe-dir {bpe_dir}: missing {p.name}")
        vocab = json.loads(enc.read_text(encoding="utf-8"))
        merges = []
        for line in merges_path.read_text(encoding="utf-8").split("\n"):
            if line.startswith("#version") or not line.strip():
                continue
            a, b = line.split(" ")
            merges.append((a, b))
        return vocab, merges, None
    if not os.path.isfile(tokenizer_json):
        raise FileNotFoundError(f"--tokenizer-json file not found: {tokenizer_json}")
    spec = json.loads(Path(tokenizer_json).read_text(encoding="utf-8"))
    model = spec.get("model") or {}
    if model.get("type") != "BPE":
        raise ValueError(f"{tokenizer_json}: expected a BPE tokenizer model, got {model.get('type')!r}")
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return model["vocab"], merges, spec.get("pre_tokenizer")


def tokenizer_vocab(dict_symbols: list[str], bpe_vocab: dict) -> tuple[dict[str, int], int]:
    """token string -> exported id, and the number of BPE tokens absent from dict.txt.

    In-dictionary tokens get their fairseq index; specials/fillers keep theirs; <mask> is
    len(dict). A BPE token missing from dict.txt is <unk> to fairseq, but HF tokenizers key BPE
    merges by id, so many tokens cannot share id 3 without corrupting merges. Those tokens get
    their own ids len(dict)+1, len(dict)+2, ... ("unk aliases"), and the exported model gives
    those ids the <unk> embedding (see `add_unk_aliases`), so HF outputs equal fairseq's.
    """
    index: dict[str, int] = {}
    for i, s in enumerate(dict_symbols):
        index.setdefault(s, i)
    vocab: dict[str, int] = {}
    for i, s in enumerate(dict_symbols):
        if i < len(SPECIALS) or not s.lstrip("-").isdigit():
            vocab[s] = i  # specials and madeupword fillers
    vocab["<mask>"] = len(dict_symbols)
    next_alias = len(dict_symbols) + 1
    for tok, bpe_id in sorted(bpe_vocab.items(), key=lambda kv: kv[1]):
        idx = index.get(str(bpe_id))
        if idx is None or idx < len(SPECIALS):
            idx, next_alias = next_alias, next_alias + 1
        vocab[tok] = idx
    return vocab, next_alias - len(dict_symbols) - 1


def add_unk_aliases(tensors: dict, n: int, tied: bool) -> None:
    """Append n rows that behave as <unk> on input and never win on output (bias -1e4)."""
    if n == 0:
        return
    emb = tensors["roberta.embeddings.word_embeddings.weight"]
    tensors["roberta.embeddings.word_embeddings.weight"] = torch.cat([emb, emb[3:4].repeat(n, 1)])
    if not tied:
        dec = tensors["lm_head.decoder.weight"]
        tensors["lm_head.decoder.weight"] = torch.cat([dec, dec[3:4].repeat(n, 1)])
    tensors["lm_head.bias"] = torch.cat([tensors["lm_head.bias"], torch.full((n,), -1e4)])
    tensors["lm_head.decoder.bias"] = tensors["lm_head.bias"].clone()


def _special(content: str, lstrip: bool = False) -> dict:
    """An added-token entry as roberta-base's special_tokens_map.json writes it."""
    return {"content": content, "lstrip": lstrip, "normalized": False, "rstrip": False, "single_word": False}


def export_tokenizer(outdir: Path, vocab: dict[str, int], merges, pretok, max_positions: int) -> None:
    """Write tokenizer.json, vocab.json, merges.txt, tokenizer_config.json and special_tokens_map.json
    with roberta-base's special-token settings: <mask> strips the whitespace before it (lstrip=True),
    so "a <mask>" encodes as [a, <mask>] as fairseq's fill_mask does, not [a, 'Ġ', <mask>]."""
    from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import BPE

    tok = Tokenizer(BPE(vocab=vocab, merges=list(merges), fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)  # GPT-2's regex split
    if pretok is not None:  # keep the source tokenizer's own pre-tokenization settings
        tok = Tokenizer.from_str(json.dumps({**json.loads(tok.to_str()), "pre_tokenizer": pretok}))
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True,
                                                      add_prefix_space=False)
    names = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
             "pad_token": "<pad>", "cls_token": "<s>", "mask_token": "<mask>"}
    specials = {n: _special(c, lstrip=(c == "<mask>")) for n, c in names.items()}
    tok.add_special_tokens([AddedToken(c, lstrip=(c == "<mask>"), rstrip=False, normalized=False, special=True)
                            for c in ("<s>", "<pad>", "</s>", "<unk>", "<mask>")])
    tok.save(str(outdir / "tokenizer.json"))
    (outdir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    with open(outdir / "merges.txt", "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write(f"{a} {b}\n")
    config = {"tokenizer_class": "RobertaTokenizer", **names, "mask_token": specials["mask_token"],
              "add_prefix_space": False, "trim_offsets": True, "errors": "replace",
              "model_max_length": int(max_positions)}
    (outdir / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (outdir / "special_tokens_map.json").write_text(json.dumps(specials, indent=2), encoding="utf-8")


def export(checkpoint, outdir, dict_path=None, bpe_dir=None, tokenizer_json=None,
           classification_head=None, mlm_only=False, label_dict=None) -> dict:
    """Write the HF folder, as a unit (a fresh folder beside OUTDIR takes its name); returns the config."""
    if bpe_dir is not None and tokenizer_json is not None:
        raise ValueError("give either --bpe-dir or --tokenizer-json, not both")
    if (bpe_dir is not None or tokenizer_json is not None) and dict_path is None:
        raise ValueError("--dict is required to export a tokenizer (fairseq indices differ from BPE ids)")
    check_outdir(str(outdir))
    state = load_checkpoint(checkpoint)
    sd = state["model"]
    margs = model_cfg(state)
    head = pick_head(sd, classification_head, mlm_only)
    tensors, tied = convert_state_dict(sd, head)
    vocab_rows = tensors["roberta.embeddings.word_embeddings.weight"].shape[0]
    symbols = None
    if dict_path is not None:
        symbols = read_dict_symbols(dict_path)
        if len(symbols) + 1 != vocab_rows:
            raise ValueError(f"--dict {dict_path} has {len(symbols)} symbols but the checkpoint embeds "
                             f"{vocab_rows} (expected len(dict)+1 for <mask>)")
    label_names = None
    if label_dict is not None:
        label_names = read_dict_symbols(label_dict)[len(SPECIALS):]
        label_names = [n for n in label_names if not n.startswith("madeupword")]
    config = build_config(sd, margs, head, tied, label_names)
    folder = atomic_files.NewDir(outdir)
    try:
        _write_folder(Path(folder.path), tensors, config, tied, symbols, dict_path, bpe_dir, tokenizer_json)
        folder.commit()
    except BaseException:
        folder.discard()
        raise
    return config


def _write_folder(out: Path, tensors, config, tied, symbols, dict_path, bpe_dir, tokenizer_json) -> None:
    from safetensors.torch import save_file

    vocab_rows = tensors["roberta.embeddings.word_embeddings.weight"].shape[0]
    if symbols is not None and (bpe_dir is not None or tokenizer_json is not None):
        bpe_vocab, merges, pretok = _bpe_source(bpe_dir, tokenizer_json)
        vocab, aliases = tokenizer_vocab(symbols, bpe_vocab)
        if aliases:
            logger.warning("%d BPE tokens are not in %s (fairseq maps them to <unk>); exporting them as "
                           "ids %d.. that share the <unk> embedding", aliases, dict_path, vocab_rows)
            add_unk_aliases(tensors, aliases, tied)
            config["vocab_size"] = vocab_rows + aliases
            config["fairseq_vocab_size"] = vocab_rows
        export_tokenizer(out, vocab, merges, pretok, config["max_position_embeddings"] - 2)
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


# Every name fairseq-export-hf writes into a folder: a non-empty OUTDIR holding only these is an earlier
# export, replaced as a whole; anything else in it is the user's, and the folder is refused.
OUR_FILES = frozenset({"config.json", "model.safetensors", "tokenizer.json", "vocab.json", "merges.txt",
                       "tokenizer_config.json", "special_tokens_map.json"})


def check_outdir(outdir: str) -> None:
    """Refuse an OUTDIR that is a file or holds files an export does not write; say when an earlier export
    is replaced (as a unit: never its tokenizer files beside new weights). Leftovers of interrupted
    exports beside it are removed."""
    for path in atomic_files.remove_abandoned_dirs(outdir):
        logger.warning("removed %s, left by a fairseq-export-hf that never finished", path)
    if not os.path.lexists(outdir):
        return
    if not os.path.isdir(outdir):
        raise ValueError(f"OUTDIR {outdir} exists and is not a folder")
    names = sorted(os.listdir(outdir))
    foreign = [n for n in names if n not in OUR_FILES]
    if foreign:
        raise ValueError(f"OUTDIR {outdir} is not empty and not an earlier fairseq-export-hf folder (it holds "
                         f"{', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}); choose a new or empty "
                         "folder, or remove those")
    if names:
        logger.warning("replacing the earlier export in %s (%s) as a whole", outdir, ", ".join(names))


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fairseq-export-hf", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("outdir")
    p.add_argument("--dict", dest="dict_path", help="the fairseq dict.txt the model was trained with")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--bpe-dir", help="folder with GPT-2 encoder.json and vocab.bpe")
    g.add_argument("--tokenizer-json", help="HF tokenizers BPE file used to make the BPE ids")
    p.add_argument("--classification-head", default=None, help="head to export (default: the only one)")
    p.add_argument("--mlm-only", action="store_true", help="export RobertaForMaskedLM even if heads exist")
    p.add_argument("--label-dict", default=None, help="label/dict.txt to name the classes in config.json")
    return p


def cli_main(argv=None) -> None:
    setup_logging()
    a = get_parser().parse_args(argv)
    try:
        cfg = export(a.checkpoint, a.outdir, a.dict_path, a.bpe_dir, a.tokenizer_json,
                     a.classification_head, a.mlm_only, a.label_dict)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"fairseq-export-hf: error: {e}")
    logger.info("wrote %s (%s) to %s", cfg["architectures"][0], "config.json + model.safetensors", a.outdir)


if __name__ == "__main__":
    cli_main()
