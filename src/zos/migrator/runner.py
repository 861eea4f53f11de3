"""Runs migrations against a database: ``migrate``, ``dry_run``, ``repair``, ``backup_now``
and ``check_database``.

discovery -> lock -> re-read applied -> plan -> load pending -> execute. Prints nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Connection, inspect

from zos.config import Settings
from zos.database import DatabaseTarget, connect, get_engine, resolve_target
from zos.errors import MigrationHistoryError, UsageError
from zos.migrator import MigrateResult, current_plan, migrations_directory, recorder
from zos.migrator.discovery import (
    LoadedMigration,
    MigrationScript,
    file_error,
    find_migrations,
    load_migrations,
)
from zos.migrator.events import EventCallback, EventKind, MigrationEvent
from zos.migrator.executor import Executor
from zos.migrator.lock import migration_lock
from zos.migrator.plan import Plan, build_plan
from zos.migrator.reader import read_history
from zos.migrator.records import AppliedMigration, State
from zos.migrator.rehearsal import RehearsedMigration, rehearse, sqlite_copy

if TYPE_CHECKING:
    from zos.backup import Backup


@dataclass(frozen=True)
class DryRun:
    """What ``migrate`` would do, rehearsed where the database allows it."""

    database: str
    from_version: int
    to_version: int
    how: str  # "copy" (SQLite), "rollback" (PostgreSQL) or "plan" (MariaDB/MySQL)
    results: tuple[RehearsedMigration, ...]

    @property
    def failed(self) -> bool:
        return any(result.error for result in self.results)


def run_migrations(
    settings: Settings,
    target: int | None = None,
    on_event: EventCallback = lambda _event: None,
    *,
    backup: bool = True,
    scripts: list[MigrationScript] | None = None,
) -> MigrateResult:
    """The whole of ``zos.migrator.migrate``: lock, re-read, plan, back up, apply.

    ``scripts`` are the migration files when the caller has just listed them without problems.
    """
    db = resolve_target(settings)
    scripts = _discover(settings) if scripts is None else scripts
    done: list[MigrationEvent] = []

    def observe(event: MigrationEvent) -> None:
        if event.kind in (EventKind.APPLIED, EventKind.ADOPTED):
            done.append(event)
        on_event(event)

    with _locked_connection(settings, db, observe) as (conn, executor):
        plan, pending = _prepare(conn, scripts, target)
        if pending and backup and inspect(conn).get_table_names():
            _back_up(settings, db, plan.current_version, observe)
        conn.rollback()
        executor.ensure_version_table()
        adopting = not plan.applied
        with executor.batched_sync():
            for migration in pending:
                adopting = adopting and executor.adopt(migration)
                if not adopting:
                    executor.apply(migration)
        to_version = _finished_head(recorder.read_applied(conn))
        conn.rollback()
    return MigrateResult(db.display, plan.current_version, to_version, tuple(done))


def dry_run(settings: Settings, target: int | None = None) -> DryRun:
    """Show what ``migrate`` would do, and rehearse it where the result can be thrown away.

    SQLite: on a copy of the file. PostgreSQL: inside a transaction that is rolled back, so it
    takes the same locks as the real run. MariaDB/MySQL: the plan only.

    Raises:
        the same errors as ``migrate``, before anything is rehearsed.
    """
    db = resolve_target(settings)
    scripts = _discover(settings)
    if db.sqlite_path is not None:
        with sqlite_copy(db.sqlite_path) as copy:
            url = f"sqlite:///{copy}"
            with _locked_connection(settings, resolve_target(settings, url), url=url) as (
                conn,
                _,
            ):
                plan, pending = _prepare(conn, scripts, target)
                results = rehearse(conn, pending, adopting=not plan.applied)
        how = "copy"
    else:
        with _locked_connection(settings, db) as (conn, _):
            plan, pending = _prepare(conn, scripts, target)
            conn.rollback()
            if db.transactional_ddl:
                results, how = rehearse(conn, pending, adopting=not plan.applied), "rollback"
            else:
                results = [RehearsedMigration(m.script.version, m.description) for m in pending]
                how = "plan"
    to_version = max((m.script.version for m in pending), default=plan.current_version)
    return DryRun(db.display, plan.current_version, to_version, how, tuple(results))


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
    with _locked_connection(settings, db) as (conn, executor), executor.write_transaction():
        state = recorder.recorded_state(conn, version) if recorder.has_version_table(conn) else None
        if state != State.STARTED:
            raise UsageError(f"version {version} is not recorded as unfinished")
        if applied:
            recorder.mark_finished(conn, version, duration_ms=0)
        else:
            recorder.forget(conn, version)
        if version in recorder.read_cursors(conn):
            recorder.drop_cursor(conn, version)


def check_database(settings: Settings) -> list[str]:
    """Every reason the database is not exactly what this code expects; empty when it is.

    Newest version, every applied file unchanged, and the live schema equal to
    ``zos.database.metadata`` (tables, columns, types, nullability, indexes, foreign keys).

    Raises:
        ConfigError, DatabaseUnavailable: the database cannot be used.
    """
    db = resolve_target(settings)
    plan, problems = current_plan(settings)
    if plan.pending:
        versions = ", ".join(str(script.version) for script in plan.pending)
        problems.insert(
            0,
            f"the database is at version {plan.current_version}, not {plan.latest_version}: "
            f"pending {versions}",
        )
    if db.sqlite_path is not None and not db.sqlite_path.exists():
        return [f"no database at {db.sqlite_path} yet", *problems]
    from zos.database import metadata
    from zos.migrator.drift import find_drift

    engine = get_engine(settings, readonly=True)
    try:
        with connect(engine, db.display) as conn:
            problems.extend(find_drift(conn, metadata))
            conn.rollback()
    finally:
        engine.dispose()
    return problems


def backup_now(settings: Settings) -> Backup | str:
    """Copy an SQLite database to ``backups/`` beside it; for a server, the dump command to run.

    Raises:
        UsageError: the SQLite database does not exist yet.
        BackupError: the copy could not be written.
        ConfigError, DatabaseUnavailable: the database cannot be used.
    """
    from zos.backup import backup_sqlite, server_backup_command

    db = resolve_target(settings)
    if db.backend != "sqlite":
        return server_backup_command(db.url)
    if db.sqlite_path is None or not db.sqlite_path.exists():
        raise UsageError(
            f"there is no SQLite database at {db.sqlite_path or db.display} to back up"
        )
    version = _finished_head(read_history(settings).applied)
    return backup_sqlite(db.sqlite_path, version, keep=settings.backups.keep)


def _discover(settings: Settings) -> list[MigrationScript]:
    scripts, file_problems = find_migrations(migrations_directory(settings))
    if file_problems:
        # Name every bad file at once, the importable-but-broken ones included.
        raise file_error(file_problems + load_migrations(scripts)[1])
    return scripts


@contextmanager
def _locked_connection(
    settings: Settings,
    db: DatabaseTarget,
    on_event: EventCallback = lambda _event: None,
    *,
    url: str | None = None,
) -> Iterator[tuple[Connection, Executor]]:
    """A connection holding the run-wide migration lock, and an executor on it."""
    timeout = settings.database.lock_timeout_seconds
    engine = get_engine(settings, url=url)
    try:
        with connect(engine, db.display) as conn:
            executor = Executor(conn, db, timeout, on_event)
            with migration_lock(conn, db.backend, timeout, executor.announce_wait):
                yield conn, executor
    finally:
        engine.dispose()


def _prepare(
    conn: Connection, scripts: list[MigrationScript], target: int | None
) -> tuple[Plan, list[LoadedMigration]]:
    """Re-read the history under the lock, plan, and load what will run, or refuse."""
    applied = recorder.read_applied(conn)
    resumable = frozenset(recorder.read_cursors(conn))
    conn.rollback()
    plan = build_plan(scripts, applied, target, resumable)
    pending, load_problems = load_migrations(list(plan.pending))
    problems = [*plan.problems, *load_problems]
    if not plan.problems and load_problems:
        raise file_error(load_problems)
    if len(problems) == 1:
        raise MigrationHistoryError(problems[0])
    if problems:
        raise MigrationHistoryError(f"{len(problems)} problems with the migrations:", problems)
    return plan, pending


def _back_up(settings: Settings, db: DatabaseTarget, version: int, on_event: EventCallback) -> None:
    """Copy an SQLite file; for a server, say how to take a dump, since zos cannot."""
    from zos.backup import backup_sqlite, restore_instructions, server_backup_command

    if db.sqlite_path is None:
        if db.backend != "sqlite":
            on_event(
                MigrationEvent(EventKind.BACKUP_ADVICE, version, server_backup_command(db.url))
            )
        return
    made = backup_sqlite(db.sqlite_path, version, keep=settings.backups.keep)
    how = restore_instructions(made, db.sqlite_path)
    on_event(MigrationEvent(EventKind.BACKED_UP, version, str(made.path), detail=how))


def _finished_head(applied: list[AppliedMigration]) -> int:
    return max((row.version for row in applied if row.finished), default=0)
