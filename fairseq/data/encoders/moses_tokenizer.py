"""--tokenizer moses (fairseq's MosesTokenizer) through sacremoses; without sacremoses, building it is an
ImportError naming the package (pip install sacremoses, or this package's [moses] extra)."""
from __future__ import annotations

from dataclasses import dataclass, field

from fairseq.data.encoders.registry import register_tokenizer
from fairseq.dataclass import FairseqDataclass


@dataclass
class MosesTokenizerConfig(FairseqDataclass):
    source_lang: str = field(default="en", metadata={"help": "source language"})
    target_lang: str = field(default="en", metadata={"help": "target language"})
    moses_no_dash_splits: bool = field(default=False, metadata={"help": "don't apply dash split rules"})
    moses_no_escape: bool = field(default=False,
                                  metadata={"help": "don't perform HTML escaping on apostrophe, quotes, etc."})


def load_sacremoses():
    try:
        import sacremoses
    except ImportError:
        raise ImportError("--tokenizer moses needs the sacremoses package: pip install sacremoses "
                          "(or pip install 'fairseq-sctd[moses]')") from None
    return sacremoses


@register_tokenizer("moses", dataclass=MosesTokenizerConfig)
class MosesTokenizer:
    def __init__(self, cfg):
        self.cfg = cfg
        moses = load_sacremoses()
        self.tok = moses.MosesTokenizer(cfg.source_lang)
        self.detok = moses.MosesDetokenizer(cfg.target_lang)

    def encode(self, x: str) -> str:
        return self.tok.tokenize(x, aggressive_dash_splits=not self.cfg.moses_no_dash_splits, return_str=True,
                                 escape=not self.cfg.moses_no_escape)

    def decode(self, x: str) -> str:
        return self.detok.detokenize(x.split())
