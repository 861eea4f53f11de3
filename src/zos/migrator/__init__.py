"""The public migration API: ``migrate`` and ``status``.

discovery -> lock -> re-read applied -> plan -> load pending -> execute. Prints nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from zos.config import Settings
from zos.database import DatabaseTarget, connect, get_engine, resolve_target
from zos.errors import MigrationHistoryError, UsageError
from zos.migrator import recorder
from zos.migrator.discovery import (
    DEFAULT_DIRECTORY,
    LoadedMigration,
    file_error,
    find_migrations,
    load_migrations,
)
from zos.migrator.executor import EventCallback, EventKind, Executor, MigrationEvent
from zos.migrator.lock import migration_lock
from zos.migrator.plan import Plan, build_plan

__all__ = [
    "EventKind",
    "MigrateResult",
    "MigrationEvent",
    "StatusReport",
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
    pending: tuple[LoadedMigration, ...]
    problems: tuple[str, ...]


def migrations_directory(settings: Settings) -> Path:
    return settings.migrations_dir or DEFAULT_DIRECTORY


def migrate(
    settings: Settings,
    target: int | None = None,
    on_event: EventCallback = lambda _event: None,
) -> MigrateResult:
    """Apply pending migrations up to ``target`` (default: the newest).

    Every file is validated and the whole history checked, under the lock, before the first
    statement runs.

    Raises:
        ConfigError, DatabaseUnavailable: the database cannot be used.
        MigrationFileError: a migration file is invalid.
        MigrationHistoryError: the recorded history does not fit the files.
        UsageError: ``target`` names no migration or lies below the current version.
        LockTimeout: another runner kept the lock too long.
        MigrationFailed: a migration raised; earlier ones in this run stay applied.
    """
    db = resolve_target(settings)
    scripts, file_problems = find_migrations(migrations_directory(settings))
    if file_problems:
        # Name every bad file at once, the importable-but-broken ones included.
        raise file_error(file_problems + load_migrations(scripts)[1])
    done: list[MigrationEvent] = []

    def observe(event: MigrationEvent) -> None:
        if event.kind in (EventKind.APPLIED, EventKind.ADOPTED):
            done.append(event)
        on_event(event)

    timeout = settings.database.lock_timeout_seconds
    engine = get_engine(settings)
    try:
        with connect(engine, db.display) as conn:
            executor = Executor(conn, db, timeout, observe)
            with migration_lock(conn, db.backend, timeout, executor.announce_wait):
                applied = recorder.read_applied(conn)
                conn.rollback()
                plan = build_plan(scripts, applied, target)
                pending, load_problems = load_migrations(list(plan.pending))
                _refuse(plan.problems, load_problems)
                executor.ensure_version_table()
                adopting = not applied
                for migration in pending:
                    adopting = adopting and executor.adopt(migration)
                    if not adopting:
                        executor.apply(migration)
                to_version = max((row.version for row in recorder.read_applied(conn)), default=0)
                conn.rollback()
    finally:
        engine.dispose()
    return MigrateResult(db.display, plan.current_version, to_version, tuple(done))


def repair(settings: Settings, version: int, *, applied: bool) -> None:
    """Resolve a migration recorded as started but never finished.

    ``applied=True`` records it as applied (its changes were checked and are all present);
    ``applied=False`` forgets it, so the next run applies it again.

    Raises:
        ConfigError, DatabaseUnavailable: the database cannot be used.
        UsageError: ``version`` is not recorded as unfinished.
        LockTimeout: a migration is running.
    """
    db = resolve_target(settings)
    if db.sqlite_path is not None and not db.sqlite_path.exists():
        raise UsageError(f"version {version} is not recorded as unfinished (no database yet)")
    timeout = settings.database.lock_timeout_seconds
    engine = get_engine(settings)
    try:
        with connect(engine, db.display) as conn:
            executor = Executor(conn, db, timeout, lambda _event: None)
            with migration_lock(conn, db.backend, timeout), executor.write_transaction():
                state = (
                    recorder.recorded_state(conn, version)
                    if recorder.has_version_table(conn)
                    else None
                )
                if state != recorder.State.STARTED:
                    raise UsageError(f"version {version} is not recorded as unfinished")
                if applied:
                    recorder.mark_finished(conn, version, duration_ms=0)
                else:
                    recorder.forget(conn, version)
    finally:
        engine.dispose()


def status(settings: Settings) -> StatusReport:
    """Compare the database with the files without changing either.

    Creates no file, directory or table: a missing SQLite file is reported as version 0.

    Raises:
        ConfigError, DatabaseUnavailable: the database cannot be used.
        MigrationFileError: the migration folder does not exist.
    """
    db = resolve_target(settings)
    scripts, file_problems = find_migrations(migrations_directory(settings))
    plan = build_plan(scripts, _read_applied_readonly(db, settings))
    pending, load_problems = load_migrations(list(plan.pending))
    problems = (*file_problems, *plan.problems, *load_problems)
    return StatusReport(db.display, plan, tuple(pending), problems)


def _read_applied_readonly(
    db: DatabaseTarget, settings: Settings
) -> list[recorder.AppliedMigration]:
    if db.sqlite_path is not None and not db.sqlite_path.exists():
        return []
    engine = get_engine(settings, readonly=True)
    try:
        with connect(engine, db.display) as conn:
            applied = recorder.read_applied(conn)
            conn.rollback()
            return applied
    finally:
        engine.dispose()


def _refuse(history_problems: tuple[str, ...], file_problems: list[str]) -> None:
    problems = [*history_problems, *file_problems]
    if not problems:
        return
    if not history_problems:
        raise file_error(file_problems)
    if len(problems) == 1:
        raise MigrationHistoryError(problems[0])
    raise MigrationHistoryError(f"{len(problems)} problems with the migrations:", problems)
