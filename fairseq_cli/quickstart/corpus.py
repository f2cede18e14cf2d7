"""A default English corpus that needs no download: the docstrings of Python's standard library.

Why: the quickstart must run offline, anywhere Python is installed, in minutes. Every Python
install carries a few MB of English prose in its standard library docstrings, which is enough
to pretrain a small RoBERTa and see the loss curves of full training vs token dropping move.

Recipe (the same one used for the fairseq-peer fixtures, applied to the standard library only):
modules are read in sorted path order; `ast.get_docstring` gives the module, class and function
docstrings in source order; each docstring is split into paragraphs at blank lines and each
paragraph joined into one line; only prose paragraphs are kept (see `is_prose`); duplicates within
a module are dropped; a module is one document and needs >= 2 kept paragraphs. Documents are then
shuffled with a seeded `random.Random` and split by document into train/valid. Output format is
fairseq's: one paragraph per line, an empty line between documents. The output depends only on
the Python version (its standard library) and the arguments.
"""
from __future__ import annotations

import argparse
import ast
import os
import random
import sysconfig
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from tqdm import tqdm

# Directories of the standard library that hold tests, demos or third-party code, not prose.
EXCLUDED_DIRS = frozenset(
    {"test", "tests", "idle_test", "lib2to3", "ensurepip", "turtledemo", "site-packages",
     "dist-packages", "__pycache__"}
)
MIN_CHARS = 40
MIN_WORDS = 7
MIN_LETTER_FRACTION = 0.85
MIN_PARAGRAPHS_PER_DOC = 2
_NON_PROSE_PREFIXES = (">>>", "...", "$ ", "%", "==", "--", "+-", "+=", "|", "- ", "* ", "+ ", "\u2022")


@dataclass
class CorpusStats:
    """What was written, for the quickstart's report."""

    train_path: Path
    valid_path: Path
    train_docs: int
    valid_docs: int
    train_lines: int
    valid_lines: int
    train_bytes: int
    valid_bytes: int

    def summary(self) -> str:
        mb = (self.train_bytes + self.valid_bytes) / 1e6
        return (f"corpus: {self.train_docs + self.valid_docs} documents, "
                f"train {self.train_lines:,} lines / {self.train_bytes / 1e6:.2f} MB, "
                f"valid {self.valid_lines:,} lines / {self.valid_bytes / 1e6:.2f} MB "
                f"({mb:.2f} MB total)")


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def iter_module_paths(root: Path) -> list[Path]:
    """All .py files under `root` outside EXCLUDED_DIRS, in sorted relative-path order."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"standard library directory not found: {root}")
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in EXCLUDED_DIRS)
        for name in filenames:
            if name.endswith(".py"):
                found.append(Path(dirpath) / name)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def split_paragraphs(docstring: str) -> list[str]:
    """Split at blank lines; join each paragraph's lines with single spaces."""
    paragraphs, current = [], []
    for line in docstring.splitlines():
        if line.strip():
            current.append(line.strip())
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    if current:
        paragraphs.append(" ".join(current))
    return paragraphs


def is_prose(paragraph: str) -> bool:
    """Keep sentences, drop code, doctests, tables, bullets and argument lists."""
    if len(paragraph) < MIN_CHARS or len(paragraph.split()) < MIN_WORDS:
        return False
    if paragraph.startswith(_NON_PROSE_PREFIXES):
        return False
    head = paragraph.split(" ", 1)[0]
    if head[:-1].isdigit() and head.endswith((".", ")")):  # numbered list item "1." / "2)"
        return False
    letters = sum(1 for c in paragraph if c.isalpha() or c == " ")
    return letters >= MIN_LETTER_FRACTION * len(paragraph)


def _docstrings_in_order(tree: ast.AST) -> Iterator[str]:
    """Module, class and function docstrings in source (depth-first) order."""
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    if isinstance(tree, kinds):
        doc = ast.get_docstring(tree, clean=True)
        if doc:
            yield doc
    for child in ast.iter_child_nodes(tree):
        yield from _docstrings_in_order(child)


def module_paragraphs(source: str) -> list[str]:
    """The kept, de-duplicated prose paragraphs of one module's source ([] if it does not parse)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escape sequences in old modules
            tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    seen, kept = set(), []
    for doc in _docstrings_in_order(tree):
        for paragraph in split_paragraphs(doc):
            if is_prose(paragraph) and paragraph not in seen:
                seen.add(paragraph)
                kept.append(paragraph)
    return kept


def build_documents(root: Path | None = None, progress: bool = False) -> list[list[str]]:
    """One document (list of paragraphs) per module with enough prose, in sorted module order."""
    root = Path(root) if root is not None else stdlib_root()
    documents = []
    paths = iter_module_paths(root)
    for path in tqdm(paths, desc="corpus: reading docstrings", unit="module", disable=not progress):
        try:
            source = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        paragraphs = module_paragraphs(source)
        if len(paragraphs) >= MIN_PARAGRAPHS_PER_DOC:
            documents.append(paragraphs)
    return documents


def _write_documents(path: Path, documents: Iterable[list[str]]) -> tuple[int, int]:
    text = "\n\n".join("\n".join(doc) for doc in documents) + "\n"
    data = text.encode("utf-8")
    path.write_bytes(data)
    return text.count("\n"), len(data)


def write_corpus(out_dir: str | os.PathLike, seed: int = 1234, valid_fraction: float = 0.05,
                 max_bytes: int | None = None, root: Path | None = None,
                 progress: bool = False) -> CorpusStats:
    """Write out_dir/train.txt and out_dir/valid.txt; return their sizes.

    The first ceil-ish `valid_fraction` of the shuffled documents (at least one) form valid.
    `max_bytes` caps the total size by dropping whole documents from the end of the shuffled
    order (for a faster quickstart or for tests).
    """
    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
    documents = build_documents(root, progress=progress)
    if len(documents) < 2:
        raise ValueError(f"too few documents with prose under {root or stdlib_root()} "
                         f"({len(documents)}); need at least 2")
    return _shuffle_split_write(documents, out_dir, seed, valid_fraction, max_bytes)


def read_documents(path: str | os.PathLike) -> list[list[str]]:
    """Documents of a text file in fairseq's layout: one paragraph per line, blank line between documents."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"corpus file not found: {path}")
    documents, current = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                current.append(line)
            elif current:
                documents.append(current)
                current = []
    if current:
        documents.append(current)
    return documents


def split_text_file(path: str | os.PathLike, out_dir: str | os.PathLike, seed: int = 1234,
                    valid_fraction: float = 0.05, max_bytes: int | None = None) -> CorpusStats:
    """Split a user's text file by document into out_dir/train.txt and out_dir/valid.txt."""
    documents = read_documents(path)
    if len(documents) < 2:
        raise ValueError(f"{path}: need at least 2 documents separated by a blank line, found {len(documents)}")
    return _shuffle_split_write(documents, out_dir, seed, valid_fraction, max_bytes)


def _shuffle_split_write(documents: list[list[str]], out_dir, seed: int, valid_fraction: float,
                         max_bytes: int | None) -> CorpusStats:
    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
    documents = list(documents)
    random.Random(seed).shuffle(documents)
    if max_bytes is not None:
        kept, total = [], 0
        for doc in documents:
            size = sum(len(p.encode("utf-8")) + 1 for p in doc) + 1
            if kept and total + size > max_bytes:
                break
            kept.append(doc)
            total += size
        documents = kept if len(kept) >= 2 else documents[:2]
    n_valid = max(1, int(round(len(documents) * valid_fraction)))
    n_valid = min(n_valid, len(documents) - 1)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_path, valid_path = out / "train.txt", out / "valid.txt"
    valid_lines, valid_bytes = _write_documents(valid_path, documents[:n_valid])
    train_lines, train_bytes = _write_documents(train_path, documents[n_valid:])
    return CorpusStats(train_path, valid_path, len(documents) - n_valid, n_valid,
                       train_lines, valid_lines, train_bytes, valid_bytes)


def main(argv: list[str] | None = None) -> None:
    """`python -m fairseq_cli.quickstart.corpus OUT_DIR`: write the corpus and print its size."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--valid-fraction", type=float, default=0.05)
    parser.add_argument("--max-bytes", type=int, default=None)
    args = parser.parse_args(argv)
    print(write_corpus(args.out_dir, args.seed, args.valid_fraction, args.max_bytes).summary())


if __name__ == "__main__":
    main()
