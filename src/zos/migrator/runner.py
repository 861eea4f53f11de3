"""Runs migrations against a database: ``migrate``, ``dry_run``, ``repair``, ``backup_now``
and ``check_database``.

discovery -> lock -> re-read applied -> plan -> load pending -> execute. Prints nothing.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect

from zos.config import Settings
from zos.database import DatabaseTarget, connect, get_engine, resolve_target
from zos.errors import Interrupted, MigrationHistoryError, RunInProgress, UsageError
from zos.migrator import MigrateResult, current_plan, migrations_directory, recorder
from zos.migrator.dialects import Dialect, RunLock, acquire, dialect_for
from zos.migrator.discovery import (
    LoadedMigration,
    MigrationScript,
    file_error,
    find_migrations,
    load_migrations,
)
from zos.migrator.events import EventCallback, EventKind, MigrationEvent
from zos.migrator.executor import Executor
from zos.migrator.interrupts import Interrupts, RunInterrupted
from zos.migrator.plan import Plan, build_plan
from zos.migrator.reader import read_history
from zos.migrator.records import AppliedMigration, State
from zos.migrator.rehearsal import RehearsedMigration, rehearse, sqlite_copy
from zos.urls import sqlite_url

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

    @property
    def lock_busy(self) -> RehearsedMigration | None:
        """The migration whose rehearsal gave up waiting for a lock, if one did."""
        return next((result for result in self.results if result.lock_busy), None)

    @property
    def changed(self) -> bool:
        """A migration escaped the rehearsal's transaction: the database may be changed."""
        return any(result.changed_database for result in self.results)


def run_migrations(
    settings: Settings,
    target: int | None = None,
    on_event: EventCallback = lambda _event: None,
    *,
    backup: bool = True,
    scripts: list[MigrationScript] | None = None,
) -> MigrateResult:
    """The whole of ``zos.migrator.migrate``: lock, read the history, plan, back up, apply.

    ``scripts`` are the migration files when the caller has just listed them without problems.
    """
    db = resolve_target(settings, migrate=True)
    scripts = _discover(settings) if scripts is None else scripts
    dialect = dialect_for(db)
    done: list[MigrationEvent] = []

    def observe(event: MigrationEvent) -> None:
        if event.kind in (EventKind.APPLIED, EventKind.ADOPTED):
            done.append(event)
        on_event(event)

    interrupts = Interrupts()
    engine = get_engine(settings, migrate=True)
    run: list[Executor] = []
    try:
        with (
            interrupts.installed(),
            _run_lock(settings, engine, dialect, interrupts, observe) as lock,
            connect(engine, db.display) as conn,
        ):
            dialect.prepare(conn)
            plan, pending = _prepare(conn, scripts, target)
            has_schema = bool(pending) and _has_schema(conn)
            if has_schema and backup:
                _back_up(settings, db, plan.current_version, observe)
            conn.rollback()
            _record_current_checksums(conn, plan)
            run.append(
                Executor(
                    conn,
                    engine,
                    dialect,
                    lock,
                    observe,
                    interrupts,
                    plan.current_version,
                    settings.database.ddl_lock_timeout_seconds,
                )
            )
            # Only a database with tables of its own can hold what a migration's check() finds.
            _apply_all(run[0], pending, adopting=not plan.applied and has_schema)
    except RunInterrupted as stop:
        version = run[0].current_version if run else None
        raise Interrupted(_interrupted_between(stop, version), stop.signum) from None
    finally:
        engine.dispose()
    return MigrateResult(db.display, plan.current_version, run[0].current_version, tuple(done))


def _has_schema(conn: Connection) -> bool:
    """Whether the database holds tables of its own, not only zos's bookkeeping."""
    return any(not name.startswith("_schema_") for name in inspect(conn).get_table_names())


def _record_current_checksums(conn: Connection, plan: Plan) -> None:
    """Rows recorded with the old checksum of the file's bytes get its current one, so that
    from now on a change that only reformats the file is not taken for an edit."""
    by_version = {script.version: script for script in plan.scripts}
    stale = [
        (row, by_version[row.version])
        for row in plan.applied
        if row.version in by_version and row.checksum != by_version[row.version].checksum
    ]
    if not stale:
        return
    with conn.begin():
        for row, script in stale:
            recorder.replace_checksum(conn, row.version, row.checksum, script.checksum)


def _apply_all(executor: Executor, pending: list[LoadedMigration], *, adopting: bool) -> None:
    """Create the version table (where DDL is transactional, in the first migration's own
    transaction), then adopt what an unversioned database already has and apply the rest, in
    order; stop at the first failure."""
    conn = executor.conn
    with executor.dialect.durable(conn):
        if executor.dialect.transactional_ddl and pending and not adopting:
            executor.prelude = recorder.ensure_version_table
        else:
            with conn.begin():
                recorder.ensure_version_table(conn)
        for migration in pending:
            adopting = adopting and executor.adopt(migration) is not None
            if not adopting:
                executor.apply(migration)
        executor.run_prelude_alone()
        executor.interrupts.check()


def _interrupted_between(stop: RunInterrupted, version: int | None) -> str:
    name = signal.Signals(stop.signum).name
    if version is None:
        return f"interrupted by {name} before any migration ran; nothing was changed"
    return (
        f"interrupted by {name} between migrations; each one applied is recorded, none is "
        f"half-done, and the database is at version {version}"
    )


@contextmanager
def _run_lock(
    settings: Settings,
    engine: Engine,
    dialect: Dialect,
    interrupts: Interrupts,
    on_event: EventCallback,
    *,
    wait: bool = True,
) -> Iterator[RunLock]:
    """Hold the run lock for the body; a waiting runner says once who it is waiting for.

    Raises:
        LockTimeout: another run kept it past ``database.lock_timeout_seconds``.
        RunInProgress: ``wait`` is False and another run holds it.
    """
    lock = dialect.run_lock(engine)
    try:
        with _translated(engine):
            _take(lock, settings, interrupts, on_event, wait=wait)
        yield lock
    finally:
        with _translated(engine):
            lock.release()


def _take(
    lock: RunLock,
    settings: Settings,
    interrupts: Interrupts,
    on_event: EventCallback,
    *,
    wait: bool,
) -> None:
    if wait:
        with interrupts.interruptible():
            acquire(
                lock,
                settings.database.lock_timeout_seconds,
                lambda holder: on_event(MigrationEvent(EventKind.WAITING, detail=holder or "")),
            )
    elif not lock.try_acquire():
        holder = lock.holder()
        raise RunInProgress(
            f"a migration run is in progress ({holder or 'another process'}); wait for it "
            "to finish and try again"
        )


@contextmanager
def _translated(engine: Engine) -> Iterator[None]:
    """A driver error in the run lock's own statements becomes ``DatabaseUnavailable``."""
    from sqlalchemy import exc

    from zos.database import first_line
    from zos.errors import DatabaseUnavailable
    from zos.urls import mask_url

    try:
        yield
    except exc.DBAPIError as error:
        display = mask_url(engine.url.render_as_string(hide_password=True))
        raise DatabaseUnavailable(
            f"database error on {display}: {first_line(error.orig)}"
        ) from error


def dry_run(settings: Settings, target: int | None = None) -> DryRun:
    """Show what ``migrate`` would do, and rehearse it where the result can be thrown away.

    SQLite: on a copy of the file. PostgreSQL: inside a transaction that is rolled back, so it
    takes the same locks as the real run. MariaDB/MySQL: the plan only. It changes nothing, so
    it takes no run lock: the copy, or the rolled-back transaction, sees only what other runs
    have committed.

    Raises:
        the same errors as ``migrate``, before anything is rehearsed.
    """
    db = resolve_target(settings, migrate=True)
    scripts = _discover(settings)
    dialect = dialect_for(db)
    running = read_history(settings).running
    if running:
        # Its migrations are half-way: a rehearsal would wait behind them or misread them.
        raise RunInProgress(
            f"a migration run is in progress ({running}); rehearse once it has finished"
        )
    interrupts = Interrupts()
    try:
        with interrupts.installed():
            if db.sqlite_path is not None:
                with sqlite_copy(db.sqlite_path) as copy:
                    plan, pending, results = _rehearse_on(
                        settings, sqlite_url(copy), db, dialect, scripts, target, interrupts
                    )
                how = "copy"
            else:
                how = "rollback" if dialect.transactional_ddl else "plan"
                plan, pending, results = _rehearse_on(
                    settings, None, db, dialect, scripts, target, interrupts, run=how == "rollback"
                )
    except RunInterrupted as stop:
        name = signal.Signals(stop.signum).name
        raise Interrupted(
            f"interrupted by {name} during the rehearsal; it was rolled back and nothing was "
            "changed",
            stop.signum,
        ) from None
    to_version = max((m.script.version for m in pending), default=plan.current_version)
    return DryRun(db.display, plan.current_version, to_version, how, tuple(results))


def _rehearse_on(
    settings: Settings,
    url: str | None,
    db: DatabaseTarget,
    dialect: Dialect,
    scripts: list[MigrationScript],
    target: int | None,
    interrupts: Interrupts,
    *,
    run: bool = True,
) -> tuple[Plan, list[LoadedMigration], list[RehearsedMigration]]:
    """Plan against the database at ``url`` (default: the configured one) and rehearse the
    pending migrations there, or only list them when ``run`` is False."""
    engine = get_engine(settings, url=url, migrate=True)
    try:
        with connect(engine, db.display) as conn:
            dialect.prepare(conn)
            plan, pending = _prepare(conn, scripts, target)
            if not run:
                return (
                    plan,
                    pending,
                    [RehearsedMigration(m.script.version, m.description) for m in pending],
                )
            return (
                plan,
                pending,
                rehearse(
                    conn,
                    dialect,
                    pending,
                    adopting=not plan.applied,
                    interrupts=interrupts,
                    lock_timeout_seconds=settings.database.ddl_lock_timeout_seconds,
                ),
            )
    finally:
        engine.dispose()


def repair(settings: Settings, version: int, *, applied: bool) -> None:
    """Resolve a migration recorded as started but never finished.

    ``applied=True`` records it as applied (its changes were checked and are all present);
    ``applied=False`` forgets it, so the next run applies it again. Refuses while a run holds
    the run lock: an unfinished-looking migration may be one that is running now.

    Raises:
        ConfigError, DatabaseUnavailable: the database cannot be used.
        UsageError: ``version`` is not recorded as unfinished.
        RunInProgress: a migration run holds the run lock.
    """
    db = resolve_target(settings, migrate=True)
    if db.sqlite_path is not None and not db.sqlite_path.exists():
        raise UsageError(f"version {version} is not recorded as unfinished (no database yet)")
    dialect = dialect_for(db)
    engine = get_engine(settings, migrate=True)
    try:
        with (
            _run_lock(settings, engine, dialect, Interrupts(), _ignore, wait=False),
            connect(engine, db.display) as conn,
        ):
            dialect.prepare(conn)
            with conn.begin():
                has_table = recorder.has_version_table(conn)
                state = recorder.recorded_state(conn, version) if has_table else None
                if state != State.STARTED:
                    raise UsageError(f"version {version} is not recorded as unfinished")
                if applied:
                    recorder.mark_finished(conn, version, duration_ms=0)
                else:
                    recorder.forget(conn, version)
                if recorder.read_cursor(conn, version) is not None:
                    recorder.drop_cursor(conn, version)
    finally:
        engine.dispose()


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


def _ignore(_event: MigrationEvent) -> None:
    return None


def _discover(settings: Settings) -> list[MigrationScript]:
    scripts, file_problems = find_migrations(migrations_directory(settings))
    if file_problems:
        # The same problems every other command reports for these files, all at once.
        raise file_error(file_problems)
    return scripts


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
