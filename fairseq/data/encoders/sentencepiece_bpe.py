"""--bpe sentencepiece (fairseq's SentencepieceBPE): pieces of a SentencePiece model, written as text.

Needs the `sentencepiece` package (pip install sentencepiece, or this package's [sentencepiece] extra);
without it, building the BPE is an ImportError naming the package.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from fairseq import file_utils
from fairseq.data.encoders.registry import register_bpe
from fairseq.dataclass import FairseqDataclass

MISSING = "???"  # omegaconf's mark for a required value


@dataclass
class SentencepieceConfig(FairseqDataclass):
    sentencepiece_model: str = field(default=MISSING, metadata={"help": "path to sentencepiece model"})
    sentencepiece_enable_sampling: bool = field(default=False, metadata={"help": "enable sampling"})
    sentencepiece_alpha: Optional[float] = field(
        default=None, metadata={"help": "smoothing for unigram sampling, merge probability for BPE-dropout"})


def load_sentencepiece():
    """The sentencepiece module, or an ImportError saying how to install it."""
    try:
        import sentencepiece
    except ImportError:
        raise ImportError("--bpe sentencepiece needs the sentencepiece package: pip install sentencepiece "
                          "(or pip install 'fairseq-sctd[sentencepiece]')") from None
    return sentencepiece


@register_bpe("sentencepiece", dataclass=SentencepieceConfig)
class SentencepieceBPE:
    def __init__(self, cfg):
        if cfg.sentencepiece_model in (None, MISSING):
            raise ValueError("--bpe sentencepiece needs --sentencepiece-model PATH")
        self.enable_sampling = cfg.sentencepiece_enable_sampling
        self.alpha = cfg.sentencepiece_alpha
        model = file_utils.cached_path(cfg.sentencepiece_model)
        self.sp = load_sentencepiece().SentencePieceProcessor()
        self.sp.Load(model)

    def encode(self, x: str) -> str:
        return " ".join(self.sp.Encode(x, out_type=str, enable_sampling=self.enable_sampling, alpha=self.alpha))

    def decode(self, x: str) -> str:
        return x.replace(" ", "").replace("\u2581", " ").strip()

    def is_beginning_of_word(self, x: str) -> bool:
        # the specials are in a SentencePiece vocabulary too: they always begin a word (as in fairseq)
        return x in ("<unk>", "<s>", "</s>", "<pad>") or x.startswith("\u2581")
