"""GPT-2 byte-level BPE (fairseq's `--bpe gpt2`) on top of HuggingFace `tokenizers`.

HF's ByteLevel pre-tokenizer uses GPT-2's regex and byte-to-unicode table, and its BPE model
applies merges by rank like GPT-2's encoder, so an HF tokenizer built from encoder.json +
vocab.bpe gives GPT-2's ids. We train with HF too and export GPT-2-format files so the result is
usable by real fairseq. Token *ids* here are BPE ids (strings in the .bpe text), not dictionary
indices: the Dictionary maps them to indices.
"""
from __future__ import annotations

import json
import os
from typing import Iterable, List, Optional

import numpy as np


def bytes_to_unicode() -> dict:
    """GPT-2's reversible byte -> printable character table.

    Printable Latin-1 bytes map to themselves; the other 68 bytes map to chr(256 + k) in byte order.
    """
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1)
    )
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _require_file(path: str, flag: str) -> str:
    if not path or not os.path.isfile(path):
        raise FileNotFoundError(f"{flag}: file not found: {path}")
    return path


def load_tokenizer(encoder_json: Optional[str] = None, vocab_bpe: Optional[str] = None,
                   tokenizer_json: Optional[str] = None):
    """An HF Tokenizer from GPT-2 files (encoder.json + vocab.bpe) or from a tokenizer.json."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    if tokenizer_json:
        return Tokenizer.from_file(_require_file(tokenizer_json, "--tokenizer-json"))
    if not (encoder_json and vocab_bpe):
        raise ValueError("give --tokenizer-json, or both --encoder-json and --vocab-bpe")
    _require_file(encoder_json, "--encoder-json")
    _require_file(vocab_bpe, "--vocab-bpe")
    try:
        model = models.BPE.from_file(encoder_json, vocab_bpe)
    except Exception as e:  # tokenizers raises its own exception type
        raise ValueError(f"cannot read BPE files {encoder_json} / {vocab_bpe}: {e}") from None
    tok = Tokenizer(model)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return tok


def export_gpt2_files(tokenizer, output_dir: str) -> None:
    """Write encoder.json + vocab.bpe (GPT-2 format) for a byte-level BPE HF tokenizer."""
    spec = json.loads(tokenizer.to_str())
    model = spec["model"]
    if model.get("type") != "BPE":
        raise ValueError(f"expected a BPE tokenizer, got model type {model.get('type')!r}")
    os.makedirs(output_dir, exist_ok=True)
    vocab = dict(sorted(model["vocab"].items(), key=lambda kv: kv[1]))
    with open(os.path.join(output_dir, "encoder.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(output_dir, "vocab.bpe"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for m in model["merges"]:
            f.write((" ".join(m) if isinstance(m, list) else m) + "\n")


def train_bpe(inputs: List[str], vocab_size: int, min_frequency: int, output_dir: str):
    """Train a byte-level BPE (no special tokens, add_prefix_space=False); write tokenizer.json,
    encoder.json and vocab.bpe into output_dir. Returns the HF tokenizer."""
    from tokenizers import ByteLevelBPETokenizer

    for p in inputs:
        _require_file(p, "--inputs")
    if vocab_size < 257:
        raise ValueError(f"--vocab-size must be at least 257 (256 bytes + 1), got {vocab_size}")
    tok = ByteLevelBPETokenizer(add_prefix_space=False)
    tok.train(files=list(inputs), vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
              special_tokens=[])
    os.makedirs(output_dir, exist_ok=True)
    tok.save(os.path.join(output_dir, "tokenizer.json"))
    export_gpt2_files(tok._tokenizer, output_dir)
    return tok


def encode_lines(tokenizer, lines: List[str]) -> List[str]:
    """Each line stripped and encoded; an empty line stays empty."""
    stripped = [ln.strip() for ln in lines]
    out = [""] * len(lines)
    todo = [i for i, s in enumerate(stripped) if s]
    if todo:
        encs = tokenizer.encode_batch([stripped[i] for i in todo], add_special_tokens=False)
        for i, e in zip(todo, encs):
            out[i] = " ".join(map(str, e.ids))
    return out


class GPT2BPE:
    """fairseq's GPT2BPE surface: encode text to a string of ids, decode back, word beginnings."""

    def __init__(self, encoder_json: Optional[str] = None, vocab_bpe: Optional[str] = None,
                 tokenizer_json: Optional[str] = None):
        self.tokenizer = load_tokenizer(encoder_json, vocab_bpe, tokenizer_json)
        vocab = self.tokenizer.get_vocab()
        self.decoder = {i: t for t, i in vocab.items()}
        self.byte_decoder = {c: b for b, c in bytes_to_unicode().items()}

    def encode(self, x: str) -> str:
        return " ".join(map(str, self.tokenizer.encode(x, add_special_tokens=False).ids))

    def decode(self, x: str) -> str:
        """Ids (and literal tokens such as <mask>) back to text; bad bytes become U+FFFD."""
        pieces = []
        for tok in x.split():
            if tok.startswith("<"):
                pieces.append(tok)
            else:
                pieces.append(self.decoder[int(tok)])
        text = "".join(pieces)
        data = bytearray(self.byte_decoder[c] for c in text if c in self.byte_decoder)
        return data.decode("utf-8", errors="replace")

    def is_beginning_of_word(self, x: str) -> bool:
        """True when the token's text starts with a space (GPT-2 marks word starts that way)."""
        return self.decode(x).startswith(" ")


def word_begins(dictionary, bpe: GPT2BPE) -> np.ndarray:
    """bool over the dictionary: True where a symbol begins a word (specials, madeupwords and
    symbols that are not BPE ids count as beginnings, as in fairseq's whole-word masking)."""
    out = np.ones(len(dictionary), dtype=bool)
    for i in range(dictionary.nspecial, len(dictionary)):
        sym = dictionary[i]
        if sym.startswith("madeupword"):
            continue
        try:
            out[i] = bpe.is_beginning_of_word(sym)
        except (ValueError, KeyError):
            out[i] = True
    return out


def iter_lines(paths: Iterable[str]):
    for p in paths:
        with open(p, encoding="utf-8") as f:
            yield from f
