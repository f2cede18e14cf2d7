"""Name -> class tables for the public surface (--task, --criterion, --optimizer, --lr-scheduler, models,
--arch).

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


# ---- --arch: architecture name -> (model class, function filling the architecture's defaults) -------
ARCH_MODEL_REGISTRY: Dict[str, type] = {}
ARCH_MODEL_NAME_REGISTRY: Dict[str, str] = {}
ARCH_CONFIG_REGISTRY: Dict[str, Callable] = {}


def register_architecture(model_name: str, arch_name: str, fn: Callable) -> Callable:
    """`--arch arch_name` builds model `model_name` after fn(args) fills defaults (fairseq's rules)."""
    models = REGISTRIES["model"].classes
    if model_name not in models:
        raise ValueError(f"Cannot register model architecture for unknown model type ({model_name})")
    if arch_name in ARCH_CONFIG_REGISTRY:
        raise ValueError(f"Cannot register duplicate model architecture ({arch_name})")
    if not callable(fn):
        raise ValueError(f"Model architecture must be callable ({arch_name})")
    ARCH_MODEL_REGISTRY[arch_name] = models[model_name]
    ARCH_MODEL_NAME_REGISTRY[arch_name] = model_name
    ARCH_CONFIG_REGISTRY[arch_name] = fn
    return fn


def get_arch(name: str) -> Callable:
    """The function filling --arch name's defaults; a one-line ValueError with the choices if unknown."""
    if name not in ARCH_CONFIG_REGISTRY:
        raise ValueError(f"unknown --arch {name!r}; choose from: {', '.join(arch_choices())}")
    return ARCH_CONFIG_REGISTRY[name]


def arch_choices() -> list:
    return sorted(ARCH_CONFIG_REGISTRY)


def model_class(arch: str):
    """The model class --arch names (a one-line ValueError with the choices when it names none)."""
    get_arch(arch)
    return ARCH_MODEL_REGISTRY[arch]
