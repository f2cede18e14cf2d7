"""fairseq.data.encoders: build_bpe / build_tokenizer from a config, as fairseq's hub and plugins call them.

Only the GPT-2 byte-level BPE (RoBERTa's) is available, from local files: fairseq's defaults for
--gpt2-encoder-json / --gpt2-vocab-bpe are download URLs, which this package does not fetch.
"""
from __future__ import annotations

from fairseq.data.encoders.gpt2_bpe import GPT2BPE

BPES = {"gpt2": GPT2BPE}


def _name(cfg, field: str):
    """The component name: cfg._name (a dataclass config group such as cfg.bpe) or cfg.<field> (argparse)."""
    if cfg is None:
        return None
    if isinstance(cfg, str):
        return cfg
    name = getattr(cfg, "_name", None)
    return name if name is not None else getattr(cfg, field, None)


def build_bpe(cfg):
    """The BPE named by cfg (None when there is none), e.g. GPT2BPE for --bpe gpt2."""
    name = _name(cfg, "bpe")
    if name is None:
        return None
    if name not in BPES:
        raise ValueError(f"--bpe {name}: not supported (available: {', '.join(BPES)})")
    encoder_json = getattr(cfg, "gpt2_encoder_json", None)
    vocab_bpe = getattr(cfg, "gpt2_vocab_bpe", None)
    if not (encoder_json and vocab_bpe) or "://" in f"{encoder_json}{vocab_bpe}":
        raise ValueError("--bpe gpt2 needs local files: pass --gpt2-encoder-json encoder.json and "
                         f"--gpt2-vocab-bpe vocab.bpe (got {encoder_json!r}, {vocab_bpe!r}; URLs are not fetched)")
    return BPES[name](encoder_json, vocab_bpe)


def build_tokenizer(cfg):
    """The pre-BPE tokenizer named by cfg; RoBERTa uses none, and no other is available."""
    name = _name(cfg, "tokenizer")
    if name is None:
        return None
    raise ValueError(f"--tokenizer {name}: not supported (RoBERTa's GPT-2 BPE needs no tokenizer)")
