"""--bpe gpt2 (fairseq's GPT2BPE): RoBERTa's byte-level BPE from encoder.json + vocab.bpe.

Token ids are written as decimal strings ("31414 232"); the dictionary maps them to indices. fairseq's
defaults for both files are download URLs: here they resolve only to fairseq's cache
(fairseq.file_utils.cached_path), so offline pass --gpt2-encoder-json / --gpt2-vocab-bpe.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from fairseq import file_utils
from fairseq.data.encoders.registry import register_bpe
from fairseq.data.encoders.gpt2_bpe_utils import get_encoder
from fairseq.dataclass import FairseqDataclass

DEFAULT_ENCODER_JSON = "https://dl.fbaipublicfiles.com/fairseq/gpt2_bpe/encoder.json"
DEFAULT_VOCAB_BPE = "https://dl.fbaipublicfiles.com/fairseq/gpt2_bpe/vocab.bpe"


@dataclass
class GPT2BPEConfig(FairseqDataclass):
    gpt2_encoder_json: str = field(default=DEFAULT_ENCODER_JSON, metadata={"help": "path to encoder.json"})
    gpt2_vocab_bpe: str = field(default=DEFAULT_VOCAB_BPE, metadata={"help": "path to vocab.bpe"})


def _local(path, flag: str) -> str:
    try:
        return file_utils.cached_path(path)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{flag}: {e}") from None


@register_bpe("gpt2", dataclass=GPT2BPEConfig)
class GPT2BPE:
    def __init__(self, cfg):
        encoder_json = _local(cfg.gpt2_encoder_json or DEFAULT_ENCODER_JSON, "--gpt2-encoder-json")
        vocab_bpe = _local(cfg.gpt2_vocab_bpe or DEFAULT_VOCAB_BPE, "--gpt2-vocab-bpe")
        self.bpe = get_encoder(encoder_json, vocab_bpe)

    def encode(self, x: str) -> str:
        return " ".join(map(str, self.bpe.encode(x)))

    def decode(self, x: str) -> str:
        return self.bpe.decode([int(t) if t not in {"<unk>", "<mask>"} else t for t in x.split()])

    def is_beginning_of_word(self, x: str) -> bool:
        return self.decode(x).startswith(" ")
