"""--bpe characters: one symbol per character (fairseq's Characters), spaces escaped as "▁"."""
from fairseq.data.encoders.registry import register_bpe
from fairseq.data.encoders.byte_utils import SPACE, SPACE_ESCAPE


@register_bpe("characters")
class Characters:
    def __init__(self, *unused):
        pass

    @staticmethod
    def add_args(parser):
        pass

    @staticmethod
    def encode(x: str) -> str:
        return SPACE.join(x.replace(SPACE, SPACE_ESCAPE))

    @staticmethod
    def decode(x: str) -> str:
        return x.replace(SPACE, "").replace(SPACE_ESCAPE, SPACE)
