"""fairseq.models.transformer: the name of fairseq's encoder-decoder Transformer, which this package lacks.

This toolkit trains RoBERTa-style encoders; fairseq's sequence-to-sequence Transformer (translation,
summarization) is not here, and `--arch transformer` is not registered. The module exists because code
written against fairseq imports `TransformerModel` from it beside things this package does have (fairseq's
own tests import it next to MultiheadAttention): importing works, and using the class says why it cannot.
"""
from fairseq.models.fairseq_model import BaseFairseqModel

_MISSING = ("fairseq's encoder-decoder TransformerModel (translation) is not part of this package, which "
            "trains RoBERTa-style encoders; see docs/compatibility.md")


class TransformerModel(BaseFairseqModel):
    """Placeholder for fairseq's encoder-decoder Transformer: every use raises NotImplementedError."""

    def __init__(self, *args, **kwargs):
        raise NotImplementedError(_MISSING)

    @classmethod
    def add_args(cls, parser):
        raise NotImplementedError(_MISSING)

    @classmethod
    def build_model(cls, args, task):
        raise NotImplementedError(_MISSING)
