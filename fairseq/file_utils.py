"""fairseq.file_utils.cached_path: a local path as is, a download URL as fairseq's cached copy of it.

fairseq's defaults for some files are URLs (--gpt2-encoder-json, --gpt2-vocab-bpe), fetched once into its
cache folder ($PYTORCH_FAIRSEQ_CACHE, default ~/.cache/torch/pytorch_fairseq) under the sha256 of the URL
(plus "." and the sha256 of the server's ETag). This package downloads nothing: a URL resolves to such a
cached file when one is there (the copy real fairseq left, or one a user put there), else to a
FileNotFoundError that names the URL and asks for the local file.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Optional


def default_cache_dir() -> str:
    """fairseq's cache folder."""
    base = os.environ.get("TORCH_HOME", os.path.join(os.path.expanduser("~"), ".cache", "torch"))
    return os.environ.get("PYTORCH_FAIRSEQ_CACHE", os.path.join(base, "pytorch_fairseq"))


def url_to_filename(url: str, etag: Optional[str] = None) -> str:
    """fairseq's cache file name for a URL: sha256(url), then "." + sha256(etag) when the ETag is known."""
    name = hashlib.sha256(url.encode("utf-8")).hexdigest()
    if etag:
        name += "." + hashlib.sha256(etag.encode("utf-8")).hexdigest()
    return name


def is_url(path: str) -> bool:
    return "://" in str(path)


def cached_path(url_or_filename, cache_dir: Optional[str] = None) -> str:
    """The local file for `url_or_filename`: the path itself when it exists; for a URL, its copy in
    fairseq's cache. FileNotFoundError otherwise."""
    path = str(url_or_filename)
    if not is_url(path):
        if not os.path.exists(path):
            raise FileNotFoundError(f"file not found: {path}")
        return path
    folder = Path(cache_dir or default_cache_dir())
    stem = url_to_filename(path)
    if folder.is_dir():
        hits = sorted(p for p in folder.iterdir() if (p.name == stem or p.name.startswith(stem + "."))
                      and not p.name.endswith(".json"))
        if hits:
            return str(hits[-1])
    raise FileNotFoundError(f"{path} is a download URL and this package downloads nothing: pass the local file "
                            f"(or put a copy at {folder / stem}, fairseq's cache)")
