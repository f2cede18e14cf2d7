"""--user-dir: import a directory of extensions as a python package, with fairseq's import_user_module
semantics, so its @register_* decorators add tasks, models, architectures, criteria, optimizers and
schedules before anything is looked up.

- The directory is imported as the package named after its last path component, with its parent
  directory put first on sys.path (so `my_plugin/__init__.py` may `from . import my_model`).
- A path that does not exist is looked up relative to the fairseq package, then to its parent
  (fairseq's rule for examples/...); if still not found, FileNotFoundError names it.
- Each directory is imported once per process; importing it again is a no-op. A different directory
  whose name is already a module (e.g. two plugins both called `src`) is an ImportError.
- Every process that builds anything calls it: parsing, spawned workers (fresh interpreters),
  torchrun ranks, fairseq-validate, fairseq-hydra-train and from_pretrained(..., user_dir=...).
"""
from __future__ import annotations

import importlib
import logging
import os
import sys

logger = logging.getLogger(__name__)

_IMPORTED = set()


def resolve_user_dir(user_dir: str) -> str:
    path = os.path.abspath(user_dir)
    if os.path.exists(path):
        return path
    package_dir = os.path.dirname(os.path.abspath(__file__))
    for base in (package_dir, os.path.dirname(package_dir)):
        candidate = os.path.join(base, user_dir)
        if os.path.exists(candidate):
            return os.path.abspath(candidate)
    raise FileNotFoundError(f"--user-dir {user_dir}: directory not found ({path})")


def import_user_module(args) -> None:
    """Import args.user_dir (if set) as a package, once; see the module docstring for the rules."""
    user_dir = getattr(args, "user_dir", None)
    if not user_dir:
        return
    path = resolve_user_dir(str(user_dir))
    if path in _IMPORTED:
        return
    parent, name = os.path.split(path)
    module = sys.modules.get(name)
    if module is None:
        sys.path.insert(0, parent)
        importlib.import_module(name)
    elif path not in [os.path.abspath(p) for p in getattr(module, "__path__", [])]:
        raise ImportError(f"--user-dir {path}: its package name {name!r} is already taken by another module "
                          f"({getattr(module, '__file__', None) or module}); rename the directory")
    else:
        logger.info(f"--user-dir={path} has already been imported")
    _IMPORTED.add(path)
