"""Building blocks: the post-LN encoder layer with SDPA attention and a cheap dropout sampler, and fairseq's
general MultiheadAttention and SinusoidalPositionalEmbedding modules."""
from fairseq.modules.multihead_attention import MultiheadAttention  # noqa: F401
from fairseq.modules.sinusoidal_positional_embedding import SinusoidalPositionalEmbedding  # noqa: F401
from fairseq.modules.transformer_layer import (  # noqa: F401
    MultiheadSelfAttention,
    TransformerEncoderLayer,
    cheap_dropout,
)
