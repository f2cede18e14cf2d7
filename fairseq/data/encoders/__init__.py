"""fairseq.data.encoders: the --bpe and --tokenizer tables (fairseq's register_bpe / register_tokenizer) and
build_bpe / build_tokenizer, as tasks, plugins and the hub call them.

A class registers itself with a config dataclass (`@register_bpe("gpt2", dataclass=GPT2BPEConfig)`); choosing
it on the command line (`--bpe gpt2`) adds the dataclass's fields as flags for any task
(--gpt2-encoder-json, --gpt2-vocab-bpe), and `build_bpe(cfg)` constructs it from parsed arguments, a config
group (cfg.bpe, with `_name`), or a bare name (its dataclass defaults). Built in: --bpe gpt2, sentencepiece,
hf_byte_bpe, bytes, characters; --tokenizer space, moses (moses needs sacremoses, sentencepiece needs
sentencepiece: a clear ImportError names the package when missing). Other fairseq names (fastbpe,
subword_nmt, bert, byte_bpe, nltk) are not built in: an unknown name is one line listing the choices.
Files are read locally; a download URL (fairseq's defaults) resolves only to fairseq's cache
(fairseq.file_utils.cached_path).
"""
from fairseq.data.encoders.registry import (  # noqa: F401
    BPE_REGISTRY,
    TOKENIZER_REGISTRY,
    add_args,
    build_bpe,
    build_tokenizer,
    config_fields,
    register_bpe,
    register_tokenizer,
)
from fairseq.data.encoders import (  # noqa: E402,F401  (the built-in names register themselves)
    bytes,
    characters,
    gpt2_bpe,
    hf_byte_bpe,
    moses_tokenizer,
    sentencepiece_bpe,
    space_tokenizer,
)
