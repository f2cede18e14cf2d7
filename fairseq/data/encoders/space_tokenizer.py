"""--tokenizer space (fairseq's SpaceTokenizer): every whitespace run becomes one space."""
import re

from fairseq.data.encoders.registry import register_tokenizer
from fairseq.dataclass import FairseqDataclass

_SPACES = re.compile(r"\s+")


@register_tokenizer("space", dataclass=FairseqDataclass)
class SpaceTokenizer:
    def __init__(self, *unused):
        pass

    def encode(self, x: str) -> str:
        return _SPACES.sub(" ", x)

    def decode(self, x: str) -> str:
        return x
