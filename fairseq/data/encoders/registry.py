"""The --bpe and --tokenizer tables and how a chosen one is built and adds its flags (fairseq.data.encoders
re-exports these names; the built-in encoders register themselves here)."""
from __future__ import annotations

import argparse
import dataclasses

from fairseq import registry
from fairseq.dataclass.flags import gen_parser_from_dataclass

_BPE = registry.setup_registry("bpe")
_TOKENIZER = registry.setup_registry("tokenizer")
BPE_REGISTRY = _BPE.classes
TOKENIZER_REGISTRY = _TOKENIZER.classes


def register_bpe(name: str, dataclass=None):
    """Class decorator: `--bpe name` builds this class; `dataclass`'s fields become flags when it is chosen."""
    return _BPE.register(name, dataclass)


def register_tokenizer(name: str, dataclass=None):
    """Class decorator: `--tokenizer name` builds this class."""
    return _TOKENIZER.register(name, dataclass)


def _field(cfg, key: str, default=None):
    if isinstance(cfg, dict):
        return cfg.get(key, default)
    return getattr(cfg, key, default)


def _build(table: registry.Registry, cfg):
    """fairseq's registry rule: the name is cfg itself (a string), cfg._name (a config group) or
    cfg.<kind> (parsed arguments); a class registered with a dataclass is built from that dataclass
    filled with cfg's values of its fields (defaults elsewhere), others from cfg as given."""
    if cfg is None:
        return None
    if isinstance(cfg, str):
        name, values = cfg, None
    else:
        name = _field(cfg, "_name") or _field(cfg, table.kind)
        values = cfg
    if name is None:
        return None
    cls = table.lookup(name)
    dc = table.dataclasses[name]
    if dc is None:
        return cls(values if values is not None else argparse.Namespace(**{table.kind: name}))
    config = dc()
    for f in dataclasses.fields(config):
        if values is not None and f.name != "_name":
            value = _field(values, f.name, dataclasses.MISSING)
            if value is not dataclasses.MISSING:
                setattr(config, f.name, value)
    config._name = name
    return cls(config)


def build_bpe(cfg):
    """The BPE cfg names (None when it names none)."""
    return _build(_BPE, cfg)


def build_tokenizer(cfg):
    """The pre-BPE tokenizer cfg names (None when it names none)."""
    return _build(_TOKENIZER, cfg)


def config_fields(kind: str, name) -> list:
    """The config fields of --<kind> <name> (none for no name or a class registered without a dataclass)."""
    table = _BPE if kind == "bpe" else _TOKENIZER
    dc = table.dataclasses.get(name) if name is not None else None
    return [f.name for f in dataclasses.fields(dc) if f.name != "_name"] if dc is not None else []


def add_args(parser, names) -> None:
    """For the chosen --bpe / --tokenizer (names.bpe, names.tokenizer), their dataclass's flags in the
    parser's `bpe` / `tokenizer` group (fairseq adds them for every task, when the name is chosen)."""
    for table in (_BPE, _TOKENIZER):
        name = getattr(names, table.kind, None)
        if name is None:
            continue
        cls = table.lookup(name)
        if table.dataclasses[name] is not None:
            gen_parser_from_dataclass(parser.add_argument_group(table.kind), table.dataclasses[name]())
        elif hasattr(cls, "add_args"):
            cls.add_args(parser.add_argument_group(table.kind))
