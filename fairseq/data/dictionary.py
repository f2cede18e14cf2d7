"""fairseq-compatible vocabulary (dict.txt).

The file format, the order of symbols and the padding rule are fixed by fairseq 0.12.2 because
checkpoints and binarized data refer to symbols by index: any drift silently scrambles a model.
"""
from __future__ import annotations

import os
from collections import Counter
from multiprocessing import Pool
from typing import Callable, List, Optional

import torch

from fairseq import utils
from fairseq.data import dataset_commit
from fairseq.data.data_utils import post_process
from fairseq.file_chunker_utils import find_offsets, line_blocks
from fairseq.file_io import PathManager
from fairseq.tokenizer import tokenize_line

OVERWRITE_FLAG = "#fairseq:overwrite"


def _utf8_error(path: str) -> str:
    """Where a file that failed to decode stops being UTF-8: '<path>:<line>: not valid UTF-8 (byte N)'."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        lineno = data.count(b"\n", 0, e.start) + 1
        return f"{path}:{lineno}: not valid UTF-8 (byte {e.start})"
    return f"{path}: not valid UTF-8"


class DuplicateSymbolError(RuntimeError, ValueError):
    """A dict.txt lists a symbol twice: fairseq's RuntimeError, and a ValueError so that every command
    reports it as its one-line error (naming the file and line) rather than a traceback."""


class Dictionary:
    """Symbol <-> index table with fairseq's specials <s>=0 <pad>=1 </s>=2 <unk>=3."""

    def __init__(self, bos="<s>", pad="<pad>", eos="</s>", unk="<unk>", extra_special_symbols=None):
        self.bos_word, self.pad_word, self.eos_word, self.unk_word = bos, pad, eos, unk
        self.symbols: List[str] = []
        self.count: List[int] = []
        self.indices: dict = {}
        self.bos_index = self.add_symbol(bos)
        self.pad_index = self.add_symbol(pad)
        self.eos_index = self.add_symbol(eos)
        self.unk_index = self.add_symbol(unk)
        for s in extra_special_symbols or []:
            self.add_symbol(s)
        self.nspecial = len(self.symbols)

    # -- lookups ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.symbols)

    def __getitem__(self, idx: int) -> str:
        if 0 <= idx < len(self.symbols):
            return self.symbols[idx]
        return self.unk_word

    def __contains__(self, sym: str) -> bool:
        return sym in self.indices

    def __eq__(self, other) -> bool:
        return isinstance(other, Dictionary) and self.indices == other.indices

    def index(self, sym: str) -> int:
        return self.indices.get(sym, self.unk_index)

    def bos(self) -> int:
        return self.bos_index

    def pad(self) -> int:
        return self.pad_index

    def eos(self) -> int:
        return self.eos_index

    def unk(self) -> int:
        return self.unk_index

    def get_count(self, idx: int) -> int:
        return self.count[idx]

    def unk_string(self, escape: bool = False) -> str:
        """The unknown symbol; escaped as <<unk>> so it cannot be mistaken for text that spells <unk>."""
        return f"<{self.unk_word}>" if escape else self.unk_word

    def string(self, tensor, bpe_symbol=None, escape_unk: bool = False, extra_symbols_to_ignore=None,
               unk_string: Optional[str] = None, include_eos: bool = False, separator: str = " ") -> str:
        """Ids -> text, fairseq's rules: <s> and (unless include_eos) </s> are left out, as is every id in
        extra_symbols_to_ignore; <unk> is written as unk_string (or unk_string(escape_unk)); the symbols
        are joined by `separator` and the BPE marker `bpe_symbol` is removed (data_utils.post_process).
        A 2-D tensor gives one line per row."""
        if torch.is_tensor(tensor) and tensor.dim() == 2:
            return "\n".join(self.string(t, bpe_symbol, escape_unk, extra_symbols_to_ignore, include_eos=include_eos)
                             for t in tensor)
        ignore = set(extra_symbols_to_ignore or [])
        if not include_eos:
            ignore.add(self.eos())
        ignore.add(self.bos())
        unk = unk_string if unk_string is not None else self.unk_string(escape_unk)

        def token_string(i):
            return unk if i == self.unk_index else self[i]

        ids = [int(utils.item(i)) for i in tensor]
        sent = separator.join(token_string(i) for i in ids if i not in ignore)
        return post_process(sent, bpe_symbol)

    def dummy_sentence(self, length: int) -> torch.Tensor:
        """`length` random non-special ids ending in </s> (for tests and dummy batches)."""
        t = torch.Tensor(length).uniform_(self.nspecial + 1, len(self)).long()
        t[-1] = self.eos()
        return t

    # -- building ----------------------------------------------------------------------------
    def add_symbol(self, word: str, n: int = 1, overwrite: bool = False) -> int:
        """Add `n` to the count of `word` (new symbols go last); with overwrite a duplicate gets a new index."""
        if word in self.indices and not overwrite:
            idx = self.indices[word]
            self.count[idx] += n
            return idx
        idx = len(self.symbols)
        self.indices[word] = idx
        self.symbols.append(word)
        self.count.append(n)
        return idx

    def update(self, other: "Dictionary") -> None:
        for word, n in zip(other.symbols, other.count):
            self.add_symbol(word, n)

    def finalize(self, threshold: int = -1, nwords: int = -1, padding_factor: int = 8) -> None:
        """Sort non-specials by count (desc), ties by symbol (asc); cut by threshold/nwords; pad.

        nwords counts the specials too, as in fairseq.
        """
        if nwords <= 0:
            nwords = len(self)
        keep_symbols = self.symbols[: self.nspecial]
        keep_count = self.count[: self.nspecial]
        merged = dict(sorted(zip(self.symbols[self.nspecial:], self.count[self.nspecial:])))
        # Counter.most_common is stable, so equal counts keep the ascending symbol order above.
        for sym, n in Counter(merged).most_common(max(nwords - self.nspecial, 0)):
            if n < threshold:
                break
            keep_symbols.append(sym)
            keep_count.append(n)
        self.symbols = list(keep_symbols)
        self.count = list(keep_count)
        self.indices = {s: i for i, s in enumerate(self.symbols)}
        self.pad_to_multiple_(padding_factor)

    def pad_to_multiple_(self, padding_factor: int) -> None:
        """Append madeupwordNNNN (count 0) until len(self) is a multiple of padding_factor."""
        if padding_factor > 1:
            i = 0
            while len(self) % padding_factor != 0:
                self.add_symbol(f"madeupword{i:04d}", n=0)
                i += 1

    # -- file io -----------------------------------------------------------------------------
    @classmethod
    def load(cls, f) -> "Dictionary":
        """A dictionary from a dict.txt path or an open text file."""
        d = cls()
        d.add_from_file(f)
        return d

    def add_from_file(self, f) -> None:
        """Read `<symbol> <count> [#fairseq:overwrite]` lines (a path or an open text file); specials
        are implicit. A symbol may be a space; a duplicate needs the overwrite flag."""
        if isinstance(f, str):
            if not os.path.isfile(f):
                raise FileNotFoundError(f"dictionary file not found: {f}")
            dataset_commit.check_complete(os.path.dirname(f))  # not half of an interrupted fairseq-preprocess
            try:
                with open(f, "r", encoding="utf-8") as fd:
                    self.add_from_file(fd)
            except UnicodeDecodeError:
                raise ValueError(_utf8_error(f) + " (dict.txt must be UTF-8; rebuild it with fairseq-preprocess)") from None
            return
        name = getattr(f, "name", "<dictionary file>")
        for lineno, raw in enumerate(f, start=1):
            line = raw.rstrip()
            try:
                word, field = line.rsplit(" ", 1)
                overwrite = False
                if field == OVERWRITE_FLAG:
                    overwrite = True
                    word, field = word.rsplit(" ", 1)
                n = int(field)
            except ValueError:
                raise ValueError(
                    f"{name}:{lineno}: incorrect dictionary format, expected "
                    f"'<token> <cnt> [flags]', got {line!r}"
                ) from None
            if n < 0:
                raise ValueError(f"{name}:{lineno}: negative count {n} for {word!r}; counts must be >= 0")
            if word in self and not overwrite:
                raise DuplicateSymbolError(
                    f"{name}:{lineno}: Duplicate word found when loading Dictionary: {word!r} "
                    f"(add ' {OVERWRITE_FLAG}' at the end of the line to let it overwrite the earlier one)"
                )
            self.add_symbol(word, n=n, overwrite=overwrite)

    def save(self, f) -> None:
        """Write every non-special symbol with its count to a path (its directory is created) or an open
        text file (fairseq drops overwrite flags too)."""
        if isinstance(f, str):
            if os.path.dirname(f):
                PathManager.mkdirs(os.path.dirname(f))
            with open(f, "w", encoding="utf-8") as fd:
                fd.write(self.dumps())
        else:
            f.write(self.dumps())

    def dumps(self) -> str:
        return "".join(f"{s} {n}\n" for s, n in zip(self.symbols[self.nspecial:], self.count[self.nspecial:]))

    # -- encoding ----------------------------------------------------------------------------
    def encode_line(
        self,
        line: str,
        line_tokenizer: Callable[[str], List[str]] = tokenize_line,
        add_if_not_exist: bool = False,
        consumer: Optional[Callable[[str, int], None]] = None,
        append_eos: bool = True,
        reverse_order: bool = False,
    ) -> torch.IntTensor:
        words = line_tokenizer(line)
        if reverse_order:
            words = list(reversed(words))
        ids = torch.empty(len(words) + (1 if append_eos else 0), dtype=torch.int32)
        for i, w in enumerate(words):
            idx = self.add_symbol(w) if add_if_not_exist else self.index(w)
            if consumer is not None:
                consumer(w, idx)
            ids[i] = idx
        if append_eos:
            ids[len(words)] = self.eos_index
        return ids

    def encode_ids(self, words: List[str]) -> List[int]:
        """Fast path for binarization: indices of pre-split words, no eos."""
        get, unk = self.indices.get, self.unk_index
        return [get(w, unk) for w in words]


    # -- counting a text file --------------------------------------------------------------
    @staticmethod
    def add_file_to_dictionary(filename: str, dict: "Dictionary", tokenize: Callable[[str], List[str]],
                               num_workers: int) -> None:
        """Add the words of every line of `filename` (and one </s> per line) to `dict` with their counts,
        in sorted word order; num_workers > 1 counts byte ranges of the file in that many processes
        (same counts)."""
        offsets = find_offsets(filename, max(int(num_workers), 1))
        jobs = [(filename, tokenize, dict.eos_word, offsets[i], offsets[i + 1]) for i in range(len(offsets) - 1)]
        if len(jobs) > 1:
            with Pool(processes=len(jobs)) as pool:
                counters = pool.starmap(_count_words, jobs)
        else:
            counters = [_count_words(*job) for job in jobs]
        total = Counter()
        for c in counters:
            total.update(c)
        for word, n in sorted(total.items()):
            dict.add_symbol(word, n)


def _count_words(filename: str, tokenize: Callable[[str], List[str]], eos_word: str, start: int, end: int) -> Counter:
    """Word counts (and one eos per line) of the lines in bytes [start, end), read a block at a time
    (fairseq/file_chunker_utils.py: the lines fairseq-preprocess binarizes, as Python's text mode reads them)."""
    counter = Counter()
    for lines in line_blocks(filename, start, end):
        for line in lines:
            counter.update(tokenize(line))
            counter[eos_word] += 1
    return counter


def placeholder_dictionary(size: int) -> Dictionary:
    """A Dictionary of exactly `size` symbols: the 4 specials, words w4, w5, ..., and <mask> last.

    For benchmarks and tests that need only the shape of a masked-LM vocabulary (<mask> at
    len - 1, as the masked_lm task appends it), not real text.
    """
    if size < 5:
        raise ValueError(f"placeholder_dictionary: size {size} leaves no room for <mask> and a word")
    d = Dictionary()
    for i in range(d.nspecial, size - 1):
        d.add_symbol(f"w{i}")
    d.add_symbol("<mask>")
    return d
