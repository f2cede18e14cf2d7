"""--bpe hf_byte_bpe (fairseq's HuggingFaceByteLevelBPE): a byte-level BPE from a HuggingFace vocab.json +
merges.txt, ids written as decimal strings."""
from __future__ import annotations

from dataclasses import dataclass, field

from tokenizers import ByteLevelBPETokenizer

from fairseq import file_utils
from fairseq.data.encoders.registry import register_bpe
from fairseq.dataclass import FairseqDataclass


@dataclass
class HuggingFaceByteLevelBPEConfig(FairseqDataclass):
    bpe_merges: str = field(default="???", metadata={"help": "path to merges.txt"})
    bpe_vocab: str = field(default="???", metadata={"help": "path to vocab.json"})
    bpe_add_prefix_space: bool = field(default=False, metadata={"help": "add prefix space before encoding"})


@register_bpe("hf_byte_bpe", dataclass=HuggingFaceByteLevelBPEConfig)
class HuggingFaceByteLevelBPE:
    def __init__(self, cfg):
        for flag, value in (("--bpe-vocab", cfg.bpe_vocab), ("--bpe-merges", cfg.bpe_merges)):
            if value in (None, "???"):
                raise ValueError(f"--bpe hf_byte_bpe needs {flag} PATH")
        self.bpe = ByteLevelBPETokenizer(file_utils.cached_path(cfg.bpe_vocab), file_utils.cached_path(cfg.bpe_merges),
                                         add_prefix_space=cfg.bpe_add_prefix_space)

    def encode(self, x: str) -> str:
        return " ".join(map(str, self.bpe.encode(x).ids))

    def decode(self, x: str) -> str:
        return self.bpe.decode([int(t) for t in x.split()])

    def is_beginning_of_word(self, x: str) -> bool:
        return self.decode(x).startswith(" ")
