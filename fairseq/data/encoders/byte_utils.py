"""fairseq's byte helpers for --bpe bytes: whitespace runs become one space, each UTF-8 byte one character
(printable Latin-1 bytes are themselves, the others chr(256 + byte)); decoding recovers the most valid
characters from a broken byte sequence."""
from __future__ import annotations

import re

WHITESPACE_NORMALIZER = re.compile(r"\s+")
SPACE = chr(32)
SPACE_ESCAPE = chr(9601)  # "▁"
PRINTABLE_LATIN = set(range(32, 127)) | set(range(161, 173)) | set(range(174, 256))
BYTE_TO_BCHAR = {b: chr(b) if b in PRINTABLE_LATIN else chr(256 + b) for b in range(256)}
BCHAR_TO_BYTE = {c: b for b, c in BYTE_TO_BCHAR.items()}


def byte_encode(x: str) -> str:
    return "".join(BYTE_TO_BCHAR[b] for b in WHITESPACE_NORMALIZER.sub(SPACE, x).encode("utf-8"))


def byte_decode(x: str) -> str:
    """The text of byte characters x, or "" when they are not valid UTF-8."""
    try:
        return bytes(BCHAR_TO_BYTE[c] for c in x).decode("utf-8")
    except ValueError:
        return ""


def smart_byte_decode(x: str) -> str:
    """byte_decode, or when x is broken the decoding that keeps the most characters (dynamic programming
    over pieces of 1-4 bytes, earliest split on ties)."""
    out = byte_decode(x)
    if out != "":
        return out
    n = len(x)
    best, back = [0] * (n + 1), [0] * (n + 1)
    for i in range(1, n + 1):
        best[i], back[i] = best[i - 1], i - 1
        for j in range(1, min(4, i) + 1):
            if best[i - j] + 1 > best[i] and byte_decode(x[i - j:i]):
                best[i], back[i] = best[i - j] + 1, i - j
    pieces, i = [], n
    while i > 0:
        if best[i] == best[back[i]] + 1:
            pieces.append(byte_decode(x[back[i]:i]))
        i = back[i]
    return "".join(reversed(pieces))
