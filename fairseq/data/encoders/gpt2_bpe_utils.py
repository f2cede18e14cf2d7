"""GPT-2's byte-level BPE encoder (fairseq's gpt2_bpe_utils: get_encoder, Encoder, bytes_to_unicode).

get_encoder reads the two files as fairseq does: encoder.json maps token strings to ids, and vocab.bpe is
read as text whose first line (the "#version" header) and last line (empty after the final newline) are
skipped, one merge "a b" per line in rank order. Encoding splits text with GPT-2's pattern, maps each
piece's UTF-8 bytes to printable characters and applies the merges by rank; HuggingFace `tokenizers`
(a ByteLevel pre-tokenizer + BPE model built from the same vocabulary and merges) does exactly that, in
Rust, so encode() is that tokenizer. decode() maps ids back (strings such as <mask> pass through as
text) and decodes the bytes with errors="replace".
"""
from __future__ import annotations

import json
from functools import lru_cache
from typing import Dict, Iterable, List, Tuple

from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from fairseq.data.bpe import bytes_to_unicode as _table


@lru_cache()
def bytes_to_unicode() -> Dict[int, str]:
    """byte -> printable character (GPT-2's reversible table)."""
    return _table()


def get_pairs(word) -> set:
    """The adjacent symbol pairs of a word (a tuple of symbols)."""
    return set(zip(word[:-1], word[1:]))


class Encoder:
    def __init__(self, encoder: Dict[str, int], bpe_merges: List[Tuple[str, str]], errors: str = "replace"):
        self.encoder = encoder
        self.decoder = {v: k for k, v in encoder.items()}
        self.errors = errors
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {v: k for k, v in self.byte_encoder.items()}
        self.bpe_ranks = {tuple(m): i for i, m in enumerate(bpe_merges)}
        try:
            model = models.BPE(vocab=dict(encoder), merges=[tuple(m) for m in bpe_merges])
        except Exception as e:  # tokenizers raises its own exception type
            raise ValueError(f"GPT-2 BPE: the merges do not fit the vocabulary: {e}") from None
        self._tok = Tokenizer(model)
        self._tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        self._tok.decoder = decoders.ByteLevel()

    def encode(self, text: str) -> List[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Iterable[str]) -> List[List[int]]:
        return [e.ids for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, tokens) -> str:
        text = "".join(self.decoder.get(t, t) if not isinstance(t, str) else t for t in tokens)
        return bytearray(self.byte_decoder[c] for c in text).decode("utf-8", errors=self.errors)


def read_merges(vocab_bpe: str) -> List[Tuple[str, str]]:
    """vocab.bpe as fairseq reads it: lines 2..n-1 (header and trailing empty line skipped)."""
    with open(vocab_bpe, "r", encoding="utf-8") as f:
        lines = f.read().split("\n")[1:-1]
    return [tuple(line.split()) for line in lines]


def get_encoder(encoder_json_path: str, vocab_bpe_path: str) -> Encoder:
    with open(encoder_json_path, "r", encoding="utf-8") as f:
        encoder = json.load(f)
    return Encoder(encoder=encoder, bpe_merges=read_merges(vocab_bpe_path))
