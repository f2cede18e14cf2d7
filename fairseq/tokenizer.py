"""fairseq.tokenizer: the whitespace tokenizer that Dictionary.encode_line uses for pre-tokenized text."""
from __future__ import annotations

import re
from typing import List

SPACE_NORMALIZER = re.compile(r"\s+")


def tokenize_line(line: str) -> List[str]:
    """Split on runs of whitespace (fairseq's rule for BPE-id text: one symbol per field)."""
    return SPACE_NORMALIZER.sub(" ", line).strip().split()
