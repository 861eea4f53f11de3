"""The public migration API.

Read-only, and light enough to run at every start: ``status``, ``history`` and the start-up
guard ``ensure_schema_current``. What changes a database (``migrate``, ``dry_run``, ``repair``,
``backup_now``) and ``check_database`` live in ``runner`` and are imported on first use.
Prints nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zos.config import Settings
from zos.errors import SchemaNotCurrent
from zos.migrator.discovery import DEFAULT_DIRECTORY, find_migrations
from zos.migrator.events import EventCallback, EventKind, MigrationEvent
from zos.migrator.plan import Plan, build_plan
from zos.migrator.reader import read_history

if TYPE_CHECKING:
    from zos.migrator.runner import (
        DryRun,
        backup_now,
        check_database,
        dry_run,
        repair,
    )

_RUNNER = {"DryRun", "backup_now", "check_database", "dry_run", "repair"}

__all__ = [
    "DryRun",
    "EventCallback",
    "EventKind",
    "HistoryEntry",
    "MigrateResult",
    "MigrationEvent",
    "StatusReport",
    "backup_now",
    "check_database",
    "current_plan",
    "dry_run",
    "ensure_schema_current",
    "history",
    "migrate",
    "migrations_directory",
    "repair",
    "status",
]


@dataclass(frozen=True)
class MigrateResult:
    """What one ``migrate`` run did."""

    database: str
    from_version: int
    to_version: int
    applied: tuple[MigrationEvent, ...]  # APPLIED and ADOPTED events, in order


@dataclass(frozen=True)
class StatusReport:
    """A read-only look at a database against the migration files."""

    database: str
    plan: Plan
    descriptions: dict[int, str]  # of the valid pending migrations, read without importing them
    problems: tuple[str, ...]
    running: str | None = None  # who is migrating now ("002 is running now, pid 4711 on host h")


@dataclass(frozen=True)
class HistoryEntry:
    """One applied migration, and whether its file is still the one that was applied."""

    version: int
    description: str
    applied_at: datetime  # naive, UTC
    duration_ms: int | None
    state: str  # "applied", "adopted", "started", or "running" (started, and its run is on)
    file: str  # "unchanged", "changed" or "missing"


def migrations_directory(settings: Settings) -> Path:
    return settings.migrations_dir or DEFAULT_DIRECTORY


def migrate(
    settings: Settings,
    target: int | None = None,
    on_event: EventCallback = lambda _event: None,
    *,
    backup: bool = True,
) -> MigrateResult:
    """Apply pending migrations up to ``target`` (default: the newest).

    Every file is validated and the whole history checked, under the lock, before the first
    statement runs. A database with nothing to do is recognised by a read-only look first, so
    the run at every deploy costs what ``status`` costs. With ``backup``, an SQLite database
    that already has a schema is copied to ``backups/`` beside it first.

    Raises:
        ConfigError, DatabaseUnavailable: the database cannot be used.
        MigrationFileError: a migration file is invalid.
        MigrationHistoryError: the recorded history does not fit the files.
        UsageError: ``target`` names no migration or lies below the current version.
        LockTimeout: another runner kept the lock too long.
        BackupError: the backup could not be written; nothing was applied.
        MigrationFailed: a migration raised; earlier ones in this run stay applied.
    """
    recorded = read_history(settings)
    scripts, file_problems = find_migrations(migrations_directory(settings))
    plan = build_plan(scripts, recorded.applied, target, recorded.resumable)
    checksums = {script.version: script.checksum for script in scripts}
    # Rows recorded with a file's old-style checksum are brought up to date under the lock.
    current = all(checksums.get(row.version, row.checksum) == row.checksum for row in plan.applied)
    # While another run holds the lock, what it is doing is not known yet: wait for it.
    nothing_to_do = not file_problems and not plan.problems and not plan.pending and current
    if nothing_to_do and not recorded.running:
        version = plan.current_version
        return MigrateResult(recorded.database, version, version, ())
    from zos.migrator.runner import run_migrations

    listed = None if file_problems else scripts
    return run_migrations(settings, target, on_event, backup=backup, scripts=listed)


def status(settings: Settings) -> StatusReport:
    """Compare the database with the files without changing either.

    Creates no file, directory or table: a missing SQLite file is reported as version 0.

    Raises:
        ConfigError, DatabaseUnavailable: the database cannot be used.
        MigrationFileError: the migration folder does not exist.
        MigrationHistoryError: a _schema_version row holds a value zos never writes.
    """
    scripts, file_problems = find_migrations(migrations_directory(settings))
    recorded = read_history(settings)
    plan = build_plan(
        scripts, recorded.applied, resumable=recorded.resumable, running=bool(recorded.running)
    )
    descriptions = {s.version: s.description for s in plan.pending if s.description}
    problems = (*file_problems, *plan.problems)
    return StatusReport(recorded.database, plan, descriptions, problems, recorded.running)


def history(settings: Settings) -> list[HistoryEntry]:
    """Every recorded migration, oldest first, with the state of its file. Read-only.

    Raises:
        ConfigError, DatabaseUnavailable: the database cannot be used.
        MigrationFileError: the migration folder does not exist.
        MigrationHistoryError: a _schema_version row holds a value zos never writes.
    """
    scripts, _ = find_migrations(migrations_directory(settings))
    by_version = {script.version: script for script in scripts}
    entries = []
    recorded = read_history(settings)
    for row in recorded.applied:
        on_disk = by_version.get(row.version)
        file = (
            "missing"
            if on_disk is None
            else "unchanged"
            if on_disk.matches(row.checksum)
            else "changed"
        )
        # A started migration is the one running now while another process holds the lock.
        state = "running" if recorded.running and not row.finished else str(row.state)
        entries.append(
            HistoryEntry(row.version, row.description, row.applied_at, row.duration_ms, state, file)
        )
    return entries


def ensure_schema_current(settings: Settings) -> None:
    """Start-up guard: refuse to run on a database that does not match this code.

    Call it before an application opens its engine. Read-only and cheap: no migration module
    is imported.

    Raises:
        SchemaNotCurrent: migrations are pending, the database is newer than the code, a
            migration is unfinished, or an applied migration file changed or went missing.
        ConfigError, DatabaseUnavailable: the database cannot be used.
        MigrationHistoryError: a _schema_version row holds a value zos never writes.
    """
    plan, problems, running = _plan_and_run(settings)
    if running:
        problems.insert(
            0,
            f"a migration run is in progress ({running}); start once it has finished",
        )
    elif plan.pending:
        problems.insert(
            0,
            f"{len(plan.pending)} migration(s) pending: the database is at version "
            f"{plan.current_version} and this code expects {plan.latest_version}; "
            "run 'zos db migrate'",
        )
    if len(problems) == 1:
        raise SchemaNotCurrent(f"the database schema is not current: {problems[0]}")
    if problems:
        raise SchemaNotCurrent(
            f"the database schema is not current ({len(problems)} problems):", problems
        )


def current_plan(settings: Settings) -> tuple[Plan, list[str]]:
    """The plan against what the database has recorded, and the problems with files and history."""
    plan, problems, _ = _plan_and_run(settings)
    return plan, problems


def _plan_and_run(settings: Settings) -> tuple[Plan, list[str], str | None]:
    scripts, file_problems = find_migrations(migrations_directory(settings))
    recorded = read_history(settings)
    plan = build_plan(
        scripts, recorded.applied, resumable=recorded.resumable, running=bool(recorded.running)
    )
    return plan, [*file_problems, *plan.problems], recorded.running


def __getattr__(name: str) -> Any:
    # What changes a database lives in ``runner`` with SQLAlchemy, imported on first use, so
    # that status and the start-up guard on SQLite start without it.
    if name in _RUNNER:
        from zos.migrator import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
