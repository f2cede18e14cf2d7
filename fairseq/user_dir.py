"""--user-dir: import a directory of extensions as a python package, with fairseq's import_user_module
semantics, so its @register_* decorators add tasks, models, architectures, criteria, optimizers and
schedules before anything is looked up.

- The directory is imported as the package named after its last path component, with its parent
  directory put first on sys.path (so `my_plugin/__init__.py` may `from . import my_model`).
- A path that does not exist is looked up relative to the fairseq package, then to its parent
  (fairseq's rule for examples/...); if still not found, FileNotFoundError names it.
- Each directory is imported once per process; importing it again is a no-op. A different directory
  whose name is already a module (e.g. two plugins both called `src`), or the name of an installed or
  standard module it would hide, is refused.
- A plugin that fails to import (a syntax error, a missing import, any exception) is one UserDirError
  naming the plugin's file and line, the exception and its message; the plugin's traceback stays
  attached to it (__cause__) for its author.
- Every process that builds anything calls it: parsing, spawned workers (fresh interpreters),
  torchrun ranks, fairseq-validate, fairseq-hydra-train and from_pretrained(..., user_dir=...).
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
import traceback

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


class UserDirError(ImportError, ValueError):
    """--user-dir cannot be imported. An ImportError, as fairseq's, and a ValueError, so that every
    command reports it as its one-line error: the plugin file and line, the exception, its message."""


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
        _check_not_shadowing(path, name)
        sys.path.insert(0, parent)
        try:
            importlib.import_module(name)
        except Exception as e:
            for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
                del sys.modules[loaded]  # a later attempt starts over
            sys.path.remove(parent)
            raise UserDirError(f"--user-dir {path}: {_where(e, path)}: {type(e).__name__}: "
                               f"{_first_line(e)}") from e
    elif path not in [os.path.abspath(p) for p in getattr(module, "__path__", [])]:
        raise UserDirError(f"--user-dir {path}: its package name {name!r} is already taken by another module "
                           f"({getattr(module, '__file__', None) or module}); rename the directory")
    else:
        logger.info(f"--user-dir={path} has already been imported")
    _IMPORTED.add(path)


def _check_not_shadowing(path: str, name: str) -> None:
    """A plugin named like an installed or standard module would hide it for the whole process."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return
    if spec is None:
        return
    places = [os.path.realpath(p) for p in (spec.submodule_search_locations or [])]
    if os.path.realpath(path) not in places:
        where = spec.origin or (places[0] if places else name)
        raise UserDirError(f"--user-dir {path}: its package name {name!r} is also the name of the module {where}, "
                           "which it would hide; rename the directory")


def _where(error: BaseException, path: str) -> str:
    """'file:line' in the plugin where `error` happened (a SyntaxError names its own), else the plugin."""
    if isinstance(error, SyntaxError) and error.filename:
        return f"{error.filename}:{error.lineno}"
    inside = [f for f in traceback.extract_tb(error.__traceback__)
              if os.path.realpath(f.filename).startswith(os.path.realpath(path) + os.sep)]
    return f"{inside[-1].filename}:{inside[-1].lineno}" if inside else path


def _first_line(error: BaseException) -> str:
    if isinstance(error, SyntaxError):
        return error.msg
    return (str(error).splitlines() or [""])[0]
