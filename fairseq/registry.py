"""Name -> class tables for the public surface (--task, --criterion, --optimizer, --lr-scheduler, models).

fairseq's extension mechanism: a class puts itself in a table with a decorator
(`@register_task("masked_lm", dataclass=MaskedLMConfig)`), built-in classes and --user-dir plugins alike.
The decorators are re-exported under fairseq's names by fairseq.tasks, fairseq.criterions, fairseq.models
and fairseq.optim (and fairseq.optim.lr_scheduler); `import fairseq` imports those packages, so every
built-in name is registered before a command line is parsed. An unknown name is one line listing the
choices: `unknown --task 'x'; choose from: a, b, c`.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Optional


class Registry:
    """One table: flag name (`task`, `lr-scheduler`, ...) -> {name: class}, and the dataclass each was
    registered with (None for classes that add their flags with add_args)."""

    def __init__(self, kind: str, base_class: Optional[type] = None):
        self.kind = kind
        self.base_class = base_class
        self.classes: Dict[str, Any] = {}
        self.dataclasses: Dict[str, Optional[type]] = {}

    def register(self, name: str, dataclass: Optional[type] = None) -> Callable:
        def decorate(cls):
            if name in self.classes:
                raise ValueError(f"Cannot register duplicate {self.kind} ({name})")
            if self.base_class is not None and not issubclass(cls, self.base_class):
                raise ValueError(f"{self.kind} ({name}: {cls.__name__}) must extend {self.base_class.__name__}")
            if dataclass is not None and not dataclasses.is_dataclass(dataclass):
                raise ValueError(f"{self.kind} ({name}): dataclass= must be a dataclass, got {dataclass!r}")
            setattr(cls, "__dataclass", dataclass)  # fairseq's attribute; None when registered without
            self.classes[name] = cls
            self.dataclasses[name] = dataclass
            return cls
        return decorate

    def lookup(self, name: str) -> Any:
        if name not in self.classes:
            raise ValueError(f"unknown --{self.kind} {name!r}; choose from: {', '.join(self.choices())}")
        return self.classes[name]

    def choices(self) -> list:
        return sorted(self.classes)


REGISTRIES: Dict[str, Registry] = {}


def setup_registry(kind: str, base_class: Optional[type] = None) -> Registry:
    """Create the table for `--kind` (each package does this once, for its own base class)."""
    if kind in REGISTRIES:
        raise ValueError(f"registry for --{kind} already exists")
    REGISTRIES[kind] = Registry(kind, base_class)
    return REGISTRIES[kind]


def lookup(kind: str, name: str) -> Any:
    """Return the class registered as `name` for flag `--kind`, with a clear error if unknown."""
    return REGISTRIES[kind].lookup(name)


def choices(kind: str) -> list:
    return REGISTRIES[kind].choices()


def dataclass_of(cls) -> Optional[type]:
    """The dataclass `cls` was registered with (inherited from a registered base when it was not)."""
    return getattr(cls, "__dataclass", None)
