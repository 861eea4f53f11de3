"""How a migration's imports resolve: its private helpers (``_name.py`` files and ``_name/``
packages beside the migrations) load without touching sys.path or sys.modules; and the check,
made by every command without importing anything, that each top-level import can be found.
"""

from __future__ import annotations

import builtins
import importlib.util
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

# One import statement at the top level of a file: (level, module, imported names); level 0 is
# absolute, ``module`` is "" for ``from . import x``.
ImportedNames = tuple[int, str, tuple[str, ...]]
_BEYOND = "attempted relative import beyond the migrations folder"


class HelperError(Exception):
    """A private helper cannot be read or compiled; the message names it."""


def helper_path(folder: Path, dotted: str) -> Path | None:
    """The file (``_name.py``) or package folder (``_name/``) that the helper ``dotted`` names
    in ``folder``; None when the name is not a private helper there."""
    parts = dotted.split(".")
    if not parts[0].startswith("_") or not all(part.isidentifier() for part in parts):
        return None
    base = folder.joinpath(*parts)
    if base.is_dir():
        return base
    file = base.with_name(base.name + ".py")
    return file if file.is_file() else None


def import_problem(folder: Path, imported: ImportedNames) -> str | None:
    """What ``import``/``from … import`` at a file's top level would fail with, as the runner
    words it, when that is knowable without importing: a module that cannot be found.

    A top-level name is looked up with ``importlib.util.find_spec``, which runs no module code;
    a name the module itself lacks (``from x import missing``) is only seen by importing.
    """
    level, module, names = imported
    if level > 1:
        return (
            "fails to import: ImportError: attempted relative import beyond the migrations folder"
        )
    if level == 1:
        wanted = [module] if module else list(names)
        absent = [name for name in wanted if helper_path(folder, name) is None]
        return _not_found(absent[0]) if absent else None
    top = module.partition(".")[0]
    if helper_path(folder, top) is not None:
        return None if helper_path(folder, module) is not None else _not_found(module)
    if top in sys.modules or top in sys.builtin_module_names:
        return None
    try:
        found = importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        found = True  # a finder that cannot tell: importing will
    return None if found else _not_found(top)


def _not_found(name: str) -> str:
    return f"fails to import: ModuleNotFoundError: No module named {name!r}"


def builtins_with_helpers(folder: Path, helpers: dict[Path, ModuleType]) -> dict[str, Any]:
    """Python's builtins, with imports of ``_name`` (and ``_name.sub``, and relative imports
    among helpers) resolved inside ``folder``.

    Import statements look ``__import__`` up in the builtins of the module running them, so
    this reaches the migration and its helpers only: sys.path, sys.modules and every other
    module are untouched, and two migrations folders in one process never share a helper.
    ``helpers`` caches what one load has run, keyed by file or package folder.
    """
    default: Callable[..., ModuleType] = builtins.__import__

    def import_(
        name: str,
        globals: Mapping[str, object] | None = None,
        locals: Mapping[str, object] | None = None,
        fromlist: Sequence[str] | None = (),
        level: int = 0,
    ) -> ModuleType:
        fromlist = fromlist or ()
        if level > 0:
            name = _absolute(name, str((globals or {}).get("__package__") or ""), level)
            if not name:
                # "from . import _c" in a migration: the migrations folder is its package.
                root = ModuleType("migrations")
                for item in fromlist:
                    setattr(root, item, _load(folder, item, helpers))
                return root
        elif helper_path(folder, name.partition(".")[0]) is None:
            return default(name, globals, locals, fromlist, level)
        module = _load(folder, name, helpers)
        if not fromlist:
            return _load(folder, name.partition(".")[0], helpers)
        for item in fromlist:
            if not hasattr(module, item) and helper_path(folder, f"{name}.{item}") is not None:
                _load(folder, f"{name}.{item}", helpers)
        return module

    return {**vars(builtins), "__import__": import_}


def _absolute(name: str, package: str, level: int) -> str:
    parts = package.split(".") if package else []
    if level - 1 > len(parts):
        raise ImportError(_BEYOND)
    base = parts[: len(parts) - (level - 1)]
    return ".".join([*base, name] if name else base)


def _load(folder: Path, dotted: str, helpers: dict[Path, ModuleType]) -> ModuleType:
    path = helper_path(folder, dotted)
    if path is None:
        raise ModuleNotFoundError(f"No module named {dotted!r}", name=dotted)
    if path in helpers:
        return helpers[path]
    parent_name, _, leaf = dotted.rpartition(".")
    parent = _load(folder, parent_name, helpers) if parent_name else None
    module = ModuleType(dotted)
    source: Path | None = path
    if path.is_dir():
        module.__path__ = [str(path)]
        module.__package__ = dotted
        source = path / "__init__.py" if (path / "__init__.py").is_file() else None
    else:
        module.__package__ = parent_name
    module.__file__ = str(source) if source else None
    module.__builtins__ = builtins_with_helpers(folder, helpers)  # type: ignore[attr-defined]
    code = _compile(source, dotted) if source else None
    helpers[path] = module  # before running it, so that helpers importing each other work
    if parent is not None:
        setattr(parent, leaf, module)
    if code is not None:
        try:
            exec(code, vars(module))
        except BaseException:
            del helpers[path]
            raise
    return module


def _compile(source: Path, dotted: str) -> Any:
    try:
        return compile(source.read_bytes(), str(source), "exec", dont_inherit=True)
    except OSError as exc:
        raise HelperError(f"cannot read its helper {dotted}: {exc.strerror}") from exc
    except (SyntaxError, ValueError) as exc:
        raise HelperError(f"its helper {dotted} does not compile: {exc}") from exc
