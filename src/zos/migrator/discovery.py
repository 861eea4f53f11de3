"""Finds migration files, hashes them, and loads a module only when it is about to run.

Never touches a database. Listing and hashing import nothing, so a long history stays cheap.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Protocol

from zos.errors import MigrationFileError
from zos.migrator.backfill import BackfillFunction, Batches

if TYPE_CHECKING:
    from sqlalchemy import Connection

FILE_NAME = re.compile(r"^(\d{3,})_([a-z0-9][a-z0-9_]*)\.py$")
DEFAULT_DIRECTORY = Path(__file__).resolve().parent.parent / "migrations"


class UpgradeFunction(Protocol):
    def __call__(self, conn: Connection, /) -> None: ...


class CheckFunction(Protocol):
    def __call__(self, conn: Connection, /) -> bool: ...


@dataclass(frozen=True)
class MigrationScript:
    """One migration file as found on disk, before anything is imported."""

    version: int
    path: Path
    checksum: str

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class LoadedMigration:
    """A migration whose module was imported and found complete."""

    script: MigrationScript
    description: str
    upgrade: UpgradeFunction | None  # optional only for a backfill
    check: CheckFunction | None
    transactional: bool
    batches: Batches | None = None
    backfill: BackfillFunction | None = None


def checksum_of(data: bytes) -> str:
    """sha256 of a file's bytes, with line endings normalised so a checkout's CRLF is no edit."""
    return hashlib.sha256(data.replace(b"\r\n", b"\n")).hexdigest()


def discover_migrations(directory: Path) -> list[MigrationScript]:
    """Every migration file in ``directory``, ordered by version.

    Raises:
        MigrationFileError: the folder is missing, a file is misnamed or unreadable, or two
            files share a version. Every problem is listed, not only the first.
    """
    scripts, problems = find_migrations(directory)
    if problems:
        raise file_error(problems)
    return scripts


def find_migrations(directory: Path) -> tuple[list[MigrationScript], list[str]]:
    """The migration files in ``directory`` ordered by version, and what is wrong with them.

    Files whose names start with ``_`` or ``.`` are ignored; any other ``.py`` must be named
    ``NNN_slug.py``.

    Raises:
        MigrationFileError: the folder does not exist.
    """
    if not directory.is_dir():
        raise MigrationFileError(f"migrations folder {directory} does not exist")
    scripts: list[MigrationScript] = []
    problems: list[str] = []
    for path in sorted(directory.iterdir()):
        if path.suffix != ".py" or path.name.startswith(("_", ".")):
            continue
        match = FILE_NAME.match(path.name)
        if match is None:
            problems.append(
                f"{path.name}: not a migration file name (expected NNN_slug.py, "
                "e.g. 002_add_topic_index.py)"
            )
            continue
        try:
            data = path.read_bytes()
        except OSError as exc:
            problems.append(f"{path.name}: cannot be read: {exc.strerror}")
            continue
        scripts.append(MigrationScript(int(match.group(1)), path, checksum_of(data)))
    problems.extend(_duplicates(scripts))
    return sorted(scripts, key=lambda script: script.version), problems


def load_migrations(
    scripts: list[MigrationScript],
) -> tuple[list[LoadedMigration], list[str]]:
    """Import each script and check it defines what a migration must.

    Returns the loaded migrations and one problem per file that does not import (syntax or
    import error) or lacks a ``VERSION`` equal to its number, a ``DESCRIPTION`` or ``upgrade``.
    """
    loaded: list[LoadedMigration] = []
    problems: list[str] = []
    for script in scripts:
        try:
            loaded.append(_load(script))
        except _Invalid as invalid:
            problems.append(f"{script.name}: {invalid}")
    return loaded, problems


def describe_migrations(scripts: list[MigrationScript]) -> tuple[dict[int, str], list[str]]:
    """Each script's ``DESCRIPTION`` read from its source without importing it, and one problem
    per file that does not parse or has no ``DESCRIPTION`` string literal.

    Reading, not importing, keeps ``status`` fast and free of a migration's import side effects;
    ``migrate`` imports (and fully validates) what it is about to run.
    """
    descriptions: dict[int, str] = {}
    problems: list[str] = []
    for script in scripts:
        try:
            tree = ast.parse(script.path.read_bytes(), filename=script.name)
        except SyntaxError as exc:
            problems.append(f"{script.name}: syntax error at line {exc.lineno}: {exc.msg}")
            continue
        except OSError as exc:
            problems.append(f"{script.name}: cannot be read: {exc.strerror}")
            continue
        description = _literal_assignment(tree, "DESCRIPTION")
        if isinstance(description, str) and description.strip():
            descriptions[script.version] = " ".join(description.split())
        else:
            problems.append(f"{script.name}: does not define DESCRIPTION as a string")
    return descriptions, problems


def _literal_assignment(tree: ast.Module, name: str) -> object:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            try:
                return ast.literal_eval(node.value)
            except ValueError:
                return None
    return None


class _Invalid(Exception):
    pass


def _load(script: MigrationScript) -> LoadedMigration:
    module = _import(script)
    version = getattr(module, "VERSION", None)
    description = getattr(module, "DESCRIPTION", None)
    upgrade = getattr(module, "upgrade", None)
    check = getattr(module, "check", None)
    transactional = getattr(module, "TRANSACTIONAL", True)
    batches = getattr(module, "BATCHES", None)
    backfill = getattr(module, "backfill", None)
    missing = [
        name
        for name, ok in (
            ("VERSION", version is not None),
            ("DESCRIPTION", description is not None),
            ("upgrade()", any(part is not None for part in (upgrade, backfill, batches))),
        )
        if not ok
    ]
    if missing:
        raise _Invalid("does not define " + ", ".join(missing))
    if not isinstance(version, int) or isinstance(version, bool):
        raise _Invalid(f"VERSION must be an integer, not {version!r}")
    if version != script.version:
        raise _Invalid(f"VERSION is {version} but the file name says {script.version}")
    if not isinstance(description, str) or not description.strip():
        raise _Invalid("DESCRIPTION must be a non-empty string")
    if upgrade is not None and not callable(upgrade):
        raise _Invalid("upgrade must be a function taking a connection")
    if (batches is None) != (backfill is None):
        raise _Invalid("a backfill needs both BATCHES = Batches(...) and backfill(conn, low, high)")
    if batches is not None and not isinstance(batches, Batches):
        raise _Invalid("BATCHES must be a zos.migrator.backfill.Batches")
    if backfill is not None and not callable(backfill):
        raise _Invalid("backfill must be a function taking a connection, low and high")
    if batches is not None and not transactional:
        raise _Invalid("a backfill commits batch by batch already; drop TRANSACTIONAL = False")
    if check is not None and not callable(check):
        raise _Invalid("check must be a function taking a connection")
    if not isinstance(transactional, bool):
        raise _Invalid(f"TRANSACTIONAL must be True or False, not {transactional!r}")
    return LoadedMigration(
        script, description.strip(), upgrade, check, transactional, batches, backfill
    )


def _import(script: MigrationScript) -> ModuleType:
    module_name = f"zos_migration_{script.version:03d}_{script.checksum[:12]}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, script.path)
    if spec is None or spec.loader is None:
        raise _Invalid("cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        del sys.modules[module_name]
        raise _Invalid(f"syntax error at line {exc.lineno}: {exc.msg}") from exc
    except Exception as exc:
        del sys.modules[module_name]
        raise _Invalid(f"fails to import: {type(exc).__name__}: {exc}") from exc
    return module


def _duplicates(scripts: list[MigrationScript]) -> list[str]:
    by_version: dict[int, list[str]] = {}
    for script in scripts:
        by_version.setdefault(script.version, []).append(script.name)
    return [
        f"{' and '.join(names)} share version {version}"
        for version, names in sorted(by_version.items())
        if len(names) > 1
    ]


def file_error(problems: list[str]) -> MigrationFileError:
    """One error listing every problem found with the migration files."""
    if len(problems) == 1:
        return MigrationFileError(problems[0])
    return MigrationFileError(f"{len(problems)} problems with the migration files:", problems)
