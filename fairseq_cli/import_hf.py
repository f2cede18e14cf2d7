"""fairseq-import-hf HF_DIR OUT_DIR: a transformers RoBERTa masked-LM folder -> a fairseq checkpoint.

    fairseq-import-hf roberta-hf/ roberta-fairseq/
    # -> OUT_DIR/model.pt, dict.txt, encoder.json, vocab.bpe
    RobertaModel.from_pretrained("roberta-fairseq", checkpoint_file="model.pt")   # same ids and logits as HF
    fairseq-train DATA --restore-file roberta-fairseq/model.pt --reset-optimizer ...   # continue pretraining

HF_DIR holds config.json (model_type "roberta"), model.safetensors or pytorch_model.bin
(RobertaForMaskedLM names), and the byte-level BPE tokenizer: tokenizer.json, or vocab.json + merges.txt.
Neither transformers nor fairseq's model code is needed to read it.

Ids. A fairseq dictionary puts <s>, <pad>, </s>, <unk> at 0..3, then its symbols, then <mask> (appended by
the task); the symbols of a RoBERTa dict.txt are GPT-2 BPE ids written as decimal strings. We keep HF's
ids as the BPE ids (encoder.json = HF's vocabulary without the special tokens) and list the symbols in
HF id order, so fairseq index == HF id whenever HF already has that layout (real roberta-base does, and
so do folders written by fairseq-export-hf); otherwise rows are permuted (e.g. a tokenizer trained with
<mask> at id 4). HF ids that are not BPE tokens (added tokens, madeupword fillers) keep their text as
the dict symbol. A `fairseq_vocab_size` in config.json (written by fairseq-export-hf) marks the rows after
it as <unk> aliases: they are dropped from the model and, being absent from dict.txt, map to <unk>.

Weights. HF adds token_type_embeddings[0] to every input; fairseq has no token types, so that row is
added to every position embedding row (identical outputs; exactly a no-op for roberta-base, whose row
is zero). Positions start at padding_idx + 1 in both, so pad must be id 1. HF's layer_norm_eps (1e-12
unless config.json says otherwise, the RobertaConfig default) becomes the model's --layer-norm-eps.

Not supported (clear errors, not a different model): other model types (BERT, XLM-R/CamemBERT with
SentencePiece, ...), position_embedding_type other than "absolute", token type rows other than 0 with
non-zero weights, activations other than gelu, decoders, tokenizers with
add_prefix_space or a normalizer, and weights other than the masked-LM model (classification heads,
pooler-only RobertaModel folders).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch

from fairseq import models, options
from fairseq.checkpoint.cfg import args_to_cfg
from fairseq.checkpoint.files import atomic_save
from fairseq.data.dictionary import Dictionary
from fairseq.logging.progress_bar import setup_logging
from fairseq.models.roberta.model import fairseq_compatible_state_dict

logger = logging.getLogger("fairseq_cli.import_hf")

SPECIAL_NAMES = (("bos_token", "<s>"), ("pad_token", "<pad>"), ("eos_token", "</s>"), ("unk_token", "<unk>"))
ENC = "encoder.sentence_encoder."
LAYER_PAIRS = (("attention.self.query", "self_attn.q_proj"), ("attention.self.key", "self_attn.k_proj"),
               ("attention.self.value", "self_attn.v_proj"), ("attention.output.dense", "self_attn.out_proj"),
               ("attention.output.LayerNorm", "self_attn_layer_norm"), ("intermediate.dense", "fc1"),
               ("output.dense", "fc2"), ("output.LayerNorm", "final_layer_norm"))
IGNORED = ("roberta.embeddings.position_ids", "roberta.embeddings.token_type_ids")
HF_LAYER_NORM_EPS = 1e-12  # RobertaConfig's default, used when config.json leaves the key out


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {path}: {e}") from None


def read_config(hf_dir: Path) -> dict:
    path = hf_dir / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{hf_dir}: no config.json (is it a transformers model folder?)")
    c = _json(path)
    checks = [
        (c.get("model_type") == "roberta", f"model_type {c.get('model_type')!r}: only 'roberta' is supported"),
        (c.get("position_embedding_type", "absolute") == "absolute",
         f"position_embedding_type {c.get('position_embedding_type')!r}: only 'absolute' is supported"),
        (c.get("hidden_act", "gelu") == "gelu", f"hidden_act {c.get('hidden_act')!r}: only 'gelu' is supported"),
        (float(c.get("layer_norm_eps", HF_LAYER_NORM_EPS)) > 0,
         f"layer_norm_eps {c.get('layer_norm_eps')}: must be positive"),
        (not c.get("is_decoder") and not c.get("add_cross_attention"), "decoder models are not supported"),
        (c.get("pad_token_id", 1) == 1, f"pad_token_id {c.get('pad_token_id')}: must be 1 (fairseq's padding index)"),
    ]
    for ok, why in checks:
        if not ok:
            raise ValueError(f"{path}: {why}")
    return c


def read_tensors(hf_dir: Path) -> dict:
    """The weights file's tensors; a truncated, corrupt or malicious file (weights_only refuses to run a
    pickle's code) is one ValueError naming the file, not the reader's traceback."""
    st, pt = hf_dir / "model.safetensors", hf_dir / "pytorch_model.bin"
    if st.is_file():
        from safetensors.torch import load_file

        return _read_weights(st, lambda: load_file(str(st)))
    if pt.is_file():
        return _read_weights(pt, lambda: torch.load(pt, map_location="cpu", weights_only=True))
    raise FileNotFoundError(f"{hf_dir}: no model.safetensors or pytorch_model.bin")


def _read_weights(path: Path, load) -> dict:
    try:
        tensors = load()
    except Exception as e:  # SafetensorError, UnpicklingError, zip/EOF errors: many kinds, one cause
        reason = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"
        raise ValueError(f"{path}: truncated, corrupt or unsafe weights file ({reason})") from None
    if not isinstance(tensors, dict) or not all(torch.is_tensor(v) for v in tensors.values()):
        raise ValueError(f"{path}: not a weights file (expected a dict of tensors)")
    return dict(tensors)


def _token_name(value, default: str) -> str:
    if isinstance(value, dict):
        return value.get("content", default)
    return value or default


def read_tokenizer(hf_dir: Path):
    """(BPE vocab token -> id, merges, added tokens content -> id, special token names by role)."""
    names = {}
    for f in ("tokenizer_config.json", "special_tokens_map.json"):
        if (hf_dir / f).is_file():
            cfg = _json(hf_dir / f)
            for role, default in SPECIAL_NAMES + (("mask_token", "<mask>"),):
                if role in cfg:
                    names[role] = _token_name(cfg[role], default)
            if cfg.get("add_prefix_space"):
                raise ValueError(f"{hf_dir / f}: add_prefix_space=true is not supported (fairseq's GPT-2 BPE adds none)")
    for role, default in SPECIAL_NAMES + (("mask_token", "<mask>"),):
        names.setdefault(role, default)
    tj = hf_dir / "tokenizer.json"
    if tj.is_file():
        spec = _json(tj)
        model = spec.get("model") or {}
        if model.get("type") != "BPE":
            raise ValueError(f"{tj}: tokenizer model {model.get('type')!r}: only byte-level BPE is supported")
        if spec.get("normalizer") is not None:
            raise ValueError(f"{tj}: a normalizer is not supported (fairseq's GPT-2 BPE has none)")
        pre = spec.get("pre_tokenizer") or {}
        if pre.get("type") != "ByteLevel" or pre.get("add_prefix_space"):
            raise ValueError(f"{tj}: pre_tokenizer must be ByteLevel without add_prefix_space, got {pre}")
        merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
        added = {a["content"]: int(a["id"]) for a in spec.get("added_tokens", [])}
        return dict(model["vocab"]), merges, added, names
    vj, mt = hf_dir / "vocab.json", hf_dir / "merges.txt"
    if not (vj.is_file() and mt.is_file()):
        raise FileNotFoundError(f"{hf_dir}: no tokenizer.json and no vocab.json + merges.txt")
    merges = [tuple(line.split(" ")) for line in mt.read_text(encoding="utf-8").split("\n")
              if line.strip() and not line.startswith("#version")]
    vocab = _json(vj)
    added = {n: vocab[n] for n in names.values() if n in vocab}
    return vocab, merges, added, names


def fairseq_order(id_of: dict, names: dict, n_model: int) -> list:
    """HF ids in fairseq index order: <s> <pad> </s> <unk>, the rest by HF id, <mask> last."""
    roles = [r for r, _ in SPECIAL_NAMES] + ["mask_token"]
    ids = []
    for role in roles:
        tok = names[role]
        if tok not in id_of or id_of[tok] >= n_model:
            raise ValueError(f"tokenizer: special token {tok!r} ({role}) has no id below the model's {n_model} rows")
        ids.append(id_of[tok])
    if ids[1] != 1:
        raise ValueError(f"tokenizer: pad token {names['pad_token']!r} has id {ids[1]}, must be 1")
    fixed = set(ids)
    return ids[:4] + [i for i in range(n_model) if i not in fixed] + [ids[4]]


def dict_symbols(order: list, vocab: dict, added: dict) -> list:
    """dict.txt symbols for fairseq indices 4 .. len(order)-2 (see module doc)."""
    bpe_ids = {i for t, i in vocab.items() if t not in added}
    text_of = {i: t for t, i in added.items()}
    out, filler = [], 0
    for h in order[4:-1]:
        if h in bpe_ids:
            out.append(str(h))
        elif h in text_of:
            out.append(text_of[h])
        else:
            out.append(f"madeupword{filler:04d}")
            filler += 1
    return out


def convert_weights(t: dict, config: dict, order: list, path: Path) -> tuple:
    """HF tensors -> (fairseq-named state dict, untied)."""
    t = {k: v.float() for k, v in t.items()}
    used = set(IGNORED) | {k for k in t if k.startswith("roberta.pooler.")}
    sd = {}

    def take(name):
        if name not in t:
            raise ValueError(f"{path}: missing {name!r} (expected RobertaForMaskedLM weights)")
        used.add(name)
        return t[name]

    rows = torch.tensor(order)
    sd[ENC + "embed_tokens.weight"] = take("roberta.embeddings.word_embeddings.weight")[rows]
    types = take("roberta.embeddings.token_type_embeddings.weight")
    if types.size(0) > 1 and bool(types[1:].ne(0).any()):
        raise ValueError(f"{path}: token type embeddings beyond type 0 are non-zero (BERT-style segments "
                         "are not supported by fairseq's RoBERTa)")
    sd[ENC + "embed_positions.weight"] = take("roberta.embeddings.position_embeddings.weight") + types[0]
    for p in ("weight", "bias"):
        sd[f"{ENC}layernorm_embedding.{p}"] = take(f"roberta.embeddings.LayerNorm.{p}")
    n_layers = int(config["num_hidden_layers"])
    for i in range(n_layers):
        for hf, fs in LAYER_PAIRS:
            for p in ("weight", "bias"):
                sd[f"{ENC}layers.{i}.{fs}.{p}"] = take(f"roberta.encoder.layer.{i}.{hf}.{p}")
    for hf, fs in (("lm_head.dense", "dense"), ("lm_head.layer_norm", "layer_norm")):
        for p in ("weight", "bias"):
            sd[f"encoder.lm_head.{fs}.{p}"] = take(f"{hf}.{p}")
    # the decoder's own bias is what HF applies (transformers 5 does not tie it to lm_head.bias when untied)
    bias = t.get("lm_head.decoder.bias", t.get("lm_head.bias"))
    if bias is None:
        raise ValueError(f"{path}: missing 'lm_head.bias'")
    used.update(("lm_head.bias", "lm_head.decoder.bias"))
    sd["encoder.lm_head.bias"] = bias[rows]
    dec = t.get("lm_head.decoder.weight")
    used.add("lm_head.decoder.weight")
    untied = dec is not None and not torch.equal(dec, t["roberta.embeddings.word_embeddings.weight"])
    if config.get("tie_word_embeddings", True) is False and dec is None:
        raise ValueError(f"{path}: tie_word_embeddings is false but lm_head.decoder.weight is missing")
    if untied:
        sd["encoder.lm_head.weight"] = dec[rows]
    left = sorted(k for k in t if k not in used)
    if left:
        raise ValueError(f"{path}: weights that a RoBERTa masked LM does not have (not imported): "
                         f"{', '.join(left[:5])}{' ...' if len(left) > 5 else ''}")
    return sd, untied


def import_hf(hf_dir, out_dir) -> dict:
    """Write OUT_DIR/{model.pt, dict.txt, encoder.json, vocab.bpe}; returns a summary."""
    hf_dir, out = Path(hf_dir), Path(out_dir)
    if not hf_dir.is_dir():
        raise FileNotFoundError(f"HF_DIR not found: {hf_dir}")
    config = read_config(hf_dir)
    tensors = read_tensors(hf_dir)
    vocab, merges, added, names = read_tokenizer(hf_dir)
    rows = int(tensors["roberta.embeddings.word_embeddings.weight"].shape[0]) \
        if "roberta.embeddings.word_embeddings.weight" in tensors else None
    if rows is None:
        raise ValueError(f"{hf_dir}: no roberta.embeddings.word_embeddings.weight (expected RobertaForMaskedLM)")
    n_model = int(config.get("fairseq_vocab_size", rows))
    order = fairseq_order({**vocab, **added}, names, n_model)
    sd, untied = convert_weights(tensors, config, order, hf_dir)
    out.mkdir(parents=True, exist_ok=True)
    symbols = dict_symbols(order, vocab, added)
    (out / "dict.txt").write_text("".join(f"{s} 1\n" for s in symbols), encoding="utf-8")
    bpe_vocab = {tok: i for tok, i in vocab.items() if tok not in added}
    (out / "encoder.json").write_text(json.dumps(bpe_vocab, ensure_ascii=False), encoding="utf-8")
    with open(out / "vocab.bpe", "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    positions = int(sd[ENC + "embed_positions.weight"].shape[0]) - 2
    argv = [str(out), "--arch", "roberta", "--task", "masked_lm", "--criterion", "masked_lm", "--optimizer", "adam",
            "--encoder-layers", str(config["num_hidden_layers"]), "--encoder-embed-dim", str(config["hidden_size"]),
            "--encoder-ffn-embed-dim", str(config["intermediate_size"]),
            "--encoder-attention-heads", str(config["num_attention_heads"]), "--max-positions", str(positions),
            "--tokens-per-sample", str(positions), "--batch-size", "8", "--dropout", str(config.get("hidden_dropout_prob", 0.1)),
            "--attention-dropout", str(config.get("attention_probs_dropout_prob", 0.1)),
            "--layer-norm-eps", repr(float(config.get("layer_norm_eps", HF_LAYER_NORM_EPS)))]
    args = options.parse_args_and_arch(options.get_training_parser(), argv + (["--untie-weights-roberta"] if untied else []))
    dictionary = Dictionary.load(str(out / "dict.txt"))
    dictionary.add_symbol("<mask>")
    model = models.build_model(args, dictionary)
    model.load_state_dict(sd, strict=True)
    state = {"args": None, "cfg": args_to_cfg(args), "model": fairseq_compatible_state_dict(model),
             "criterion": None, "optimizer_history": [], "task_state": {}, "extra_state": {}}
    atomic_save(state, str(out / "model.pt"))
    permuted = order != list(range(len(order)))
    return {"vocab": len(order), "layers": int(config["num_hidden_layers"]), "permuted": permuted,
            "untied": untied, "dropped_alias_rows": rows - n_model}


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fairseq-import-hf", description=__doc__.split("\n\n")[0])
    p.add_argument("hf_dir", help="transformers RobertaForMaskedLM folder (config.json, weights, tokenizer)")
    p.add_argument("out_dir", help="output folder: model.pt, dict.txt, encoder.json, vocab.bpe")
    return p


def cli_main(argv=None) -> None:
    setup_logging()
    a = get_parser().parse_args(argv)
    try:
        info = import_hf(a.hf_dir, a.out_dir)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"fairseq-import-hf: error: {e}")
    logger.info("wrote %s/model.pt (%d layers, vocabulary %d%s%s) + dict.txt, encoder.json, vocab.bpe", a.out_dir,
                info["layers"], info["vocab"], ", rows permuted to fairseq's order" if info["permuted"] else "",
                ", untied LM head" if info["untied"] else "")


if __name__ == "__main__":
    cli_main()
