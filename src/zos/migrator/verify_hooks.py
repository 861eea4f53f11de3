"""What a project hands ``verify``: the row factories of its ``_verify.py`` hook, and the schema
metadata the newest version is compared with (``package.module:attribute``)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData

from zos.errors import MigrationFileError, UsageError
from zos.migrator.verify_data import Factory

HOOK = "_verify.py"


class HookError(MigrationFileError):
    """The ``_verify.py`` hook cannot be used: it fails to import, binds ``FACTORIES`` to
    something else than a dict of callables, or one of its factories fails. Not a check's
    problem: no check can run as the project meant it, so ``verify`` stops (exit 1)."""


def load_factories(directory: Path) -> dict[str, Factory]:
    """``FACTORIES`` of the folder's ``_verify.py`` hook (table name -> factory(version, row)),
    each wrapped so that its failure names the hook and the table.

    Raises:
        HookError: the hook fails to import, or ``FACTORIES`` is not a dict of callables.
    """
    hook = directory / HOOK
    if not hook.is_file():
        return {}
    spec = importlib.util.spec_from_file_location("zos_verify_hook", hook)
    if spec is None or spec.loader is None:
        raise HookError(f"{hook}: cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as error:
        raise HookError(f"{hook}: line {error.lineno}: syntax error: {error.msg}") from error
    except Exception as error:  # a project's code may raise anything on import
        raise HookError(f"{hook}: fails on import: {_said(error)}") from error
    factories = getattr(module, "FACTORIES", {})
    if not isinstance(factories, Mapping):
        raise HookError(
            f"{hook}: FACTORIES must be a dict of table name -> factory(version, row), "
            f"not {type(factories).__name__}"
        )
    wrapped: dict[str, Factory] = {}
    for table, factory in factories.items():
        if not isinstance(table, str) or not callable(factory):
            raise HookError(
                f"{hook}: FACTORIES must map table names to callables; {table!r} maps to "
                f"{type(factory).__name__}"
            )
        wrapped[table] = _guarded(hook, table, factory)
    return wrapped


def _guarded(hook: Path, table: str, factory: Any) -> Factory:
    def guarded(version: int, row: dict[str, Any]) -> Mapping[str, Any]:
        try:
            made = factory(version, row)
        except Exception as error:  # a project's code may raise anything
            raise HookError(
                f"{hook}: the factory of table {table} failed at version {version}: {_said(error)}"
            ) from error
        if not isinstance(made, Mapping):
            raise HookError(
                f"{hook}: the factory of table {table} must return the row as a dict, "
                f"not {type(made).__name__}"
            )
        return made

    return guarded


def load_metadata(reference: str, search: Path | None = None) -> MetaData:
    """The ``MetaData`` named by ``package.module:attribute`` (dots after the colon reach into
    the attribute). ``search`` (default: the working directory) is put on ``sys.path`` first,
    as a project's own package usually lives there.

    Raises:
        UsageError: the reference is malformed, does not import, or is not a ``MetaData``.
    """
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise UsageError(f"metadata {reference!r}: must be package.module:attribute")
    folder = str((search or Path.cwd()).resolve())
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        found: Any = importlib.import_module(module_name)
    except Exception as error:  # a project's module may raise anything on import
        raise UsageError(
            f"metadata {reference!r}: cannot import {module_name}: {_said(error)}"
        ) from error
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise UsageError(f"metadata {reference!r}: {module_name} has no attribute {attribute}")
        found = getattr(found, part)
    if not isinstance(found, MetaData):
        raise UsageError(
            f"metadata {reference!r}: is a {type(found).__name__}, not a sqlalchemy MetaData"
        )
    return found


def _said(error: BaseException) -> str:
    first = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__
