"""Command-line flags from a config dataclass (fairseq's gen_parser_from_dataclass): one `--field-name`
per field, with the field's default, type, choices (ChoiceEnum) and metadata["help"].

Fields whose flag the parser already has are left alone (a class's own add_args wins), and so are
fields whose default is an omegaconf interpolation such as II("common.seed"): those values come from
another group's flag."""
from __future__ import annotations

import argparse
import dataclasses
import enum
import typing
from typing import Any

from fairseq import registry


def _interpolation(value) -> bool:
    return isinstance(value, str) and value.startswith("${")


def _base_type(tp) -> Any:
    """Optional[X] -> X; List[X] stays a list (parsed as a comma list by the caller's type)."""
    if typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return tp


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def gen_parser_from_dataclass(parser, dataclass_instance, delete_default: bool = False, with_prefix=None) -> None:
    """Add a flag for every field of `dataclass_instance` that `parser` does not have yet."""
    container = parser
    existing = getattr(parser, "_option_string_actions", {})
    dests = {a.dest for a in getattr(parser, "_actions", [])}
    hints = typing.get_type_hints(type(dataclass_instance))
    for f in dataclasses.fields(dataclass_instance):
        if f.name.startswith("_"):
            continue
        flag = "--" + f.name.replace("_", "-")
        if with_prefix:
            flag = "--" + with_prefix + "-" + f.name.replace("_", "-")
        if flag in existing or f.name in dests:
            continue
        default = _default(f)
        if _interpolation(default):
            continue
        tp = _base_type(hints.get(f.name, str))
        kwargs = {"help": f.metadata.get("help", ""), "dest": f.name}
        if not delete_default:
            kwargs["default"] = default.value if isinstance(default, enum.Enum) else default
        else:
            kwargs["default"] = argparse.SUPPRESS
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            kwargs["choices"] = [m.value for m in tp]
        elif tp is bool:
            kwargs["action"] = "store_false" if default is True else "store_true"
        elif typing.get_origin(tp) in (list, tuple):
            inner = (typing.get_args(tp) or (str,))[0]
            kwargs["type"] = lambda text, t=inner: [t(v) for v in str(text).strip("[]()").split(",") if v.strip()]
        elif tp in (int, float, str):
            kwargs["type"] = tp
        container.add_argument(flag, **kwargs)


def add_registered_args(cls, parser, group: str, delete_default: bool = False) -> None:
    """The flags of the dataclass `cls` was registered with (register_task(name, dataclass=...) and the
    like), in argument group `group`: what the base classes' add_args do, unless a subclass overrides it."""
    dc = registry.dataclass_of(cls)
    if dc is not None:
        gen_parser_from_dataclass(parser.add_argument_group(group), dc(), delete_default=delete_default)
