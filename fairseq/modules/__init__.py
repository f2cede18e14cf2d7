"""Building blocks: the post-LN encoder layer with SDPA attention and a cheap dropout sampler."""
from fairseq.modules.transformer_layer import (  # noqa: F401
    MultiheadSelfAttention,
    TransformerEncoderLayer,
    cheap_dropout,
)
