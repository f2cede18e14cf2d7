"""fairseq.data.encoders.gpt2_bpe: fairseq's path to the GPT-2 BPE (implemented in fairseq.data.bpe)."""
from fairseq.data.bpe import GPT2BPE  # noqa: F401
