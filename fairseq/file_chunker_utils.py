"""Reading a text file as line-aligned byte ranges, a bounded block at a time (fairseq's public module name).

fairseq-preprocess splits its input into byte ranges that start at line boundaries so several
processes can work on one file, and each range is read in blocks of about BLOCK_BYTES, so memory
depends on the block size (and the longest line), never on the size of the file or the range.
Lines follow Python's text mode with universal newlines ("\\n", "\\r\\n" and "\\r" end a line), which
is how fairseq 0.12.2 reads them; every block ends just after a "\\n", so no "\\r\\n" is ever split.
"""
from __future__ import annotations

import os
from typing import Iterator, List

BLOCK_BYTES = 1 << 20
# The longest line read. Tokenizing a line holds every token of it as a Python string (~60 bytes per
# token, ~12x the line's bytes), so one 1 GB line would need about 12 GB; 16 MiB needs about 200 MB.
# A longer line is refused as soon as it is seen, naming the file, the offset and this limit.
MAX_LINE_BYTES = 16 << 20


def find_offsets(filename: str, num_chunks: int) -> List[int]:
    """num_chunks+1 byte offsets, each at the start of a line (the last is the file size).

    fairseq 0.12.2's rule: boundary i is the start of the first line that begins strictly after byte
    i * (size // num_chunks), so a boundary that falls exactly on a line start moves on to the next
    line. Chunks may be empty (a file with fewer lines than chunks); together they cover the file once.
    """
    size = os.path.getsize(filename)
    step = size // num_chunks
    offsets = [0]
    with open(filename, "rb") as f:
        for i in range(1, num_chunks):
            f.seek(step * i)
            f.readline()  # the rest of the line the byte falls in (all of it, if it is a line start)
            offsets.append(f.tell())
    offsets.append(size)
    return offsets


def _decode(data: bytes, path: str, base: int) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not valid UTF-8 near byte {base + e.start}") from None


def _split_lines(text: str) -> List[str]:
    """Universal-newline lines of `text`, without their line ends (a trailing partial line is kept)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def line_blocks(path: str, start: int = 0, end: int = -1, block_bytes: int = BLOCK_BYTES) -> Iterator[List[str]]:
    """Lists of the lines in bytes [start, end) of `path` (end -1: to the end of the file), in order.

    `start` must be a line start (an offset from find_offsets). A non-UTF-8 byte, or a line longer
    than MAX_LINE_BYTES, is a ValueError naming the file and the byte offset.
    """
    if end < 0:
        end = os.path.getsize(path)
    with open(path, "rb") as f:
        f.seek(start)
        pos = start
        carry = b""
        while pos < end:
            data = f.read(min(block_bytes, end - pos))
            if not data:
                break
            pos += len(data)
            if carry:  # the line begun in an earlier block, up to its end in this one (or all of this one)
                nl = data.find(b"\n")
                _check_length(len(carry) + (nl + 1 if nl >= 0 else len(data)), path, pos - len(data) - len(carry))
            data = carry + data
            carry = b""
            if pos < end:
                cut = data.rfind(b"\n") + 1
                if cut == 0:  # a line longer than the block: keep reading, up to MAX_LINE_BYTES
                    carry = data
                    continue
                data, carry = data[:cut], data[cut:]
            base = pos - len(data) - len(carry)
            yield _split_lines(_decode(data, path, base))
        if carry:
            yield _split_lines(_decode(carry, path, pos - len(carry)))


def _check_length(length: int, path: str, offset: int) -> None:
    if length > MAX_LINE_BYTES:
        raise ValueError(f"{path}: the line at byte {offset} is longer than {MAX_LINE_BYTES >> 20} MiB, the "
                         "longest line fairseq-preprocess reads (its tokens would need ~12x that in memory); "
                         "split it into shorter lines")


class Chunker:
    """Context manager giving the lines (with "\\n" line ends, as text mode) of bytes [start, end)."""

    def __init__(self, path: str, start_offset: int, end_offset: int):
        self.path, self.start_offset, self.end_offset = path, start_offset, end_offset

    def __enter__(self) -> Iterator[str]:
        return (line + "\n" for block in line_blocks(self.path, self.start_offset, self.end_offset) for line in block)

    def __exit__(self, exc_type, exc_val, exc_tb) -> None:
        return None
