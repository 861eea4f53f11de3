"""Finds migration files, reads and checks each one without running it, and runs a module's
code only when it is about to be applied. One reader for every command.

Never touches a database and never writes into the migrations folder (no ``__pycache__``).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType, ModuleType
from typing import TYPE_CHECKING, Protocol

from zos.errors import MigrationFileError
from zos.migrator.backfill import BackfillFunction, Batches
from zos.migrator.imports import (
    HelperError,
    ImportedNames,
    builtins_with_helpers,
    import_problem,
)
from zos.migrator.source import MAX_VERSION, read_source

if TYPE_CHECKING:
    from sqlalchemy import Connection

FILE_NAME = re.compile(r"^([0-9]{3,})_([a-z0-9][a-z0-9_]*)\.py$", re.ASCII)
DEFAULT_DIRECTORY = Path(__file__).resolve().parent.parent / "migrations"


class UpgradeFunction(Protocol):
    def __call__(self, conn: Connection, /) -> None: ...


class CheckFunction(Protocol):
    def __call__(self, conn: Connection, /) -> bool: ...


@dataclass(frozen=True)
class MigrationScript:
    """One migration file as read from disk and checked, before any of its code has run."""

    version: int
    path: Path
    checksum: str  # what is recorded: sha256 of the canonical syntax tree (zos.migrator.source)
    description: str = ""  # DESCRIPTION, whitespace collapsed; "" when the file is invalid
    legacy_checksum: str | None = None  # sha256 of the bytes, accepted from older records
    code: CodeType | None = field(default=None, repr=False, compare=False)  # None: invalid

    @property
    def name(self) -> str:
        return self.path.name

    def matches(self, recorded: str) -> bool:
        """Whether a recorded checksum is this file's, in the current or the legacy form."""
        return recorded in (self.checksum, self.legacy_checksum)


@dataclass(frozen=True)
class LoadedMigration:
    """A migration whose module was run from its checked code and found complete."""

    script: MigrationScript
    description: str
    upgrade: UpgradeFunction | None  # optional only for a backfill
    check: CheckFunction | None
    transactional: bool
    batches: Batches | None = None
    backfill: BackfillFunction | None = None
    # DDL_LOCK_TIMEOUT_SECONDS and DDL_LOCK_RETRIES when the file sets them (checked by source)
    ddl_lock_timeout_seconds: float | None = None
    ddl_lock_retries: int | None = None


def discover_migrations(directory: Path) -> list[MigrationScript]:
    """Every migration file in ``directory``, ordered by version, each checked statically.

    Raises:
        MigrationFileError: the folder is missing, or a file is misnamed, unreadable, invalid
            or shares its version. Every problem is listed, not only the first.
    """
    scripts, problems = find_migrations(directory)
    if problems:
        raise file_error(problems)
    return scripts


def find_migrations(directory: Path) -> tuple[list[MigrationScript], list[str]]:
    """The migration files in ``directory`` ordered by version, and what is wrong with them.

    Every file is read once and checked without running it (zos.migrator.source.read_source):
    every command gives the same verdict on the same folder. Files whose names start with ``_``
    or ``.`` are not migrations; any other ``.py`` must be named ``NNN_slug.py`` with
    ``1 <= NNN <= 2147483647``. An invalid file is listed (so its number counts) with
    ``code`` None, and its problem is returned as ``"<file>: <problem>"``.

    Raises:
        MigrationFileError: the folder does not exist or cannot be listed.
    """
    if not directory.is_dir():
        raise MigrationFileError(f"migrations folder {directory} does not exist")
    try:
        paths = sorted(directory.iterdir())
    except OSError as exc:
        raise MigrationFileError(
            f"cannot list migrations folder {directory}: {exc.strerror}"
        ) from exc
    scripts: list[MigrationScript] = []
    problems: list[str] = []
    # Most files import the same few modules: each is looked up once per scan, not per file.
    verdicts: dict[ImportedNames, str | None] = {}
    for path in paths:
        if path.suffix != ".py" or path.name.startswith(("_", ".")):
            continue
        name = _printable(path.name)
        match = FILE_NAME.match(path.name)
        if match is None:
            problems.append(
                f"{name}: not a migration file name (expected NNN_slug.py, "
                "e.g. 002_add_topic_index.py)"
            )
            continue
        digits = match.group(1).lstrip("0")
        if len(digits) > len(str(MAX_VERSION)) or int(digits or "0") > MAX_VERSION:
            problems.append(
                f"{name}: version {digits} is above {MAX_VERSION:,}, the largest number "
                "_schema_version can hold; renumber it"
            )
            continue
        if not digits:
            problems.append(f"{name}: version 0 means no migration applied; number from 001")
            continue
        try:
            data = path.read_bytes()
        except OSError as exc:
            problems.append(f"{name}: cannot be read: {exc.strerror}")
            # Listed all the same: its number is taken (zos db new must not reuse it).
            scripts.append(MigrationScript(int(digits), path, "", ""))
            continue
        facts = read_source(data, int(digits), str(path))
        problems.extend(f"{name}: {problem}" for problem in facts.problems)
        # A module that cannot be found fails the import every command would need; said here,
        # where status, check and the guard read the file too, in the words migrate uses.
        missing = [_import_problem(directory, imported, verdicts) for imported in facts.imports]
        if not facts.problems and any(missing):
            problems.append(f"{name}: {next(p for p in missing if p)}")
            facts = facts.without_code()
        scripts.append(
            MigrationScript(
                int(digits),
                path,
                facts.checksum,
                facts.description,
                facts.legacy_checksum,
                facts.code,
            )
        )
    problems.extend(_duplicates(scripts))
    return sorted(scripts, key=lambda script: script.version), problems


def _import_problem(
    directory: Path, imported: ImportedNames, verdicts: dict[ImportedNames, str | None]
) -> str | None:
    if imported not in verdicts:
        verdicts[imported] = import_problem(directory, imported)
    return verdicts[imported]


def load_migrations(
    scripts: Sequence[MigrationScript],
) -> tuple[list[LoadedMigration], list[str]]:
    """Run each valid script's checked code in a fresh module, and check what only running it
    can show: that it imports, and that its names are what its source says.

    Private helpers (``_name.py`` beside the migrations) are importable from a migration as
    ``import _name`` / ``from _name import x``; each call loads them afresh the same way.
    Scripts that failed the static check are skipped (their problem is already listed).
    Returns the loaded migrations and one ``"<file>: <problem>"`` per file that fails.
    """
    loaded: list[LoadedMigration] = []
    problems: list[str] = []
    helpers: dict[Path, ModuleType] = {}
    for script in scripts:
        if script.code is None:
            continue
        try:
            loaded.append(_load(script, helpers))
        except _Invalid as invalid:
            problems.append(f"{script.name}: {invalid}")
    return loaded, problems


class _Invalid(Exception):
    pass


def _load(script: MigrationScript, helpers: dict[Path, ModuleType]) -> LoadedMigration:
    assert script.code is not None
    name = f"zos_migration_{script.version}_{script.checksum[:12]}"
    module = _run(script.code, name, script.path, helpers)
    found = vars(module)
    upgrade, check, backfill = (found.get(name) for name in ("upgrade", "check", "backfill"))
    batches = found.get("BATCHES")
    changed = [
        name
        for name, ok in (
            ("VERSION", found.get("VERSION") == script.version),
            ("DESCRIPTION", " ".join(str(found.get("DESCRIPTION")).split()) == script.description),
            ("TRANSACTIONAL", isinstance(found.get("TRANSACTIONAL", True), bool)),
            ("DDL_LOCK_TIMEOUT_SECONDS", _number(found.get("DDL_LOCK_TIMEOUT_SECONDS", 1))),
            ("DDL_LOCK_RETRIES", _count(found.get("DDL_LOCK_RETRIES", 0))),
        )
        if not ok
    ]
    if changed:
        raise _Invalid(f"{', '.join(changed)} changed while the file was imported")
    for label, value in (("upgrade", upgrade), ("check", check), ("backfill", backfill)):
        if value is not None and not callable(value):
            raise _Invalid(f"{label} is no longer a function once the file is imported")
    if batches is not None and not isinstance(batches, Batches):
        raise _Invalid("BATCHES must be a zos.migrator.backfill.Batches")
    return LoadedMigration(
        script,
        script.description,
        upgrade,
        check,
        found.get("TRANSACTIONAL", True),
        batches,
        backfill,
        found.get("DDL_LOCK_TIMEOUT_SECONDS"),
        found.get("DDL_LOCK_RETRIES"),
    )


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _run(code: CodeType, name: str, path: Path, helpers: dict[Path, ModuleType]) -> ModuleType:
    """Execute ``code`` as a new module named ``name``; a failure is an ``_Invalid``."""
    module = ModuleType(name)
    module.__file__ = str(path)
    module.__builtins__ = builtins_with_helpers(path.parent, helpers)  # type: ignore[attr-defined]
    # Registered so that dataclasses and typing.get_type_hints in a migration find the module.
    sys.modules[name] = module
    try:
        exec(code, vars(module))
    except HelperError as exc:
        del sys.modules[name]
        raise _Invalid(str(exc)) from exc
    except (Exception, SystemExit) as exc:
        del sys.modules[name]
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


def _printable(name: str) -> str:
    # A file name that is not valid UTF-8 arrives with surrogate escapes, which cannot be printed.
    return name.encode("utf-8", "backslashreplace").decode("utf-8")


def file_error(problems: list[str]) -> MigrationFileError:
    """One error listing every problem found with the migration files."""
    if len(problems) == 1:
        return MigrationFileError(problems[0])
    return MigrationFileError(f"{len(problems)} problems with the migration files:", problems)
