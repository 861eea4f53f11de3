"""Applies loaded migrations: each one and its version row commit together or not at all.

Where DDL cannot be rolled back (MariaDB/MySQL, or a migration declaring ``TRANSACTIONAL =
False``) a ``started`` row is committed first, so a crash half-way cannot pass unnoticed.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, exc

from zos.database import (
    SQLITE_BEGIN_IMMEDIATE,
    DatabaseTarget,
    first_line,
    set_busy_timeout,
    set_foreign_keys,
    sqlite_pragma,
)
from zos.errors import LockTimeout, MigrationFailed
from zos.migrator import recorder
from zos.migrator.backfill import BackfillFunction, count_between, next_high, start_key
from zos.migrator.discovery import LoadedMigration
from zos.migrator.events import EventCallback, EventKind, MigrationEvent
from zos.migrator.records import BackfillCursor, State
from zos.migrator.transactions import autocommit, broken_foreign_keys, forbid_commit

_DROP_TABLE = (sqlite3.SQLITE_DROP_TABLE, sqlite3.SQLITE_DROP_TEMP_TABLE)
# How long one SQLite BEGIN IMMEDIATE attempt waits before the runner says it is waiting.
_SQLITE_FIRST_WAIT_MS = 250


@dataclass
class Executor:
    """Runs migrations on one connection that nothing else uses meanwhile."""

    conn: Connection
    target: DatabaseTarget
    lock_timeout: float
    on_event: EventCallback
    _announced_wait: bool = False

    def announce_wait(self) -> None:
        """Say once per run that another runner is in the way."""
        if not self._announced_wait:
            self._announced_wait = True
            self.on_event(MigrationEvent(EventKind.WAITING))

    @contextmanager
    def batched_sync(self) -> Iterator[None]:
        """On SQLite, sync the WAL once at the end of the run instead of at every commit.

        With ``synchronous = NORMAL`` a WAL-mode commit is atomic and survives a killed process;
        only a power cut could undo the last commits, and then each migration goes back
        together with its version row. The checkpoint at the end syncs the WAL, so what the run
        reports as applied is on disk when it returns. A long history of small migrations was
        spending most of its time in per-commit fsyncs.
        """
        if self.target.backend != "sqlite":
            yield
            return
        sqlite_pragma(self.conn, "synchronous = NORMAL")
        try:
            yield
        finally:
            if not self.conn.invalidated and not self.conn.in_transaction():
                sqlite_pragma(self.conn, "wal_checkpoint(PASSIVE)")
                sqlite_pragma(self.conn, "synchronous = FULL")

    def ensure_version_table(self) -> None:
        with self.write_transaction():
            recorder.ensure_version_table(self.conn)

    def adopt(self, migration: LoadedMigration) -> bool:
        """Record ``migration`` without running it when its ``check()`` finds it present."""
        if migration.check is None:
            return False
        with self.write_transaction():
            if recorder.recorded_state(self.conn, migration.script.version) is not None:
                return True
            if not migration.check(self.conn):
                return False
            self._record(migration, State.ADOPTED, None)
        self._emit(EventKind.ADOPTED, migration)
        return True

    def apply(self, migration: LoadedMigration) -> bool:
        """Run one migration; False when another runner had already applied it.

        Raises:
            MigrationFailed: ``upgrade()`` raised, or committed on its own.
        """
        if migration.batches is not None:
            done = self._apply_backfill(migration)
        elif self.target.transactional_ddl and migration.transactional:
            done = self._apply_atomically(migration)
        else:
            done = self._apply_with_marker(migration)
        if done is None:
            self._emit(EventKind.SKIPPED, migration)
            return False
        self._emit(EventKind.APPLIED, migration, done)
        return True

    def _apply_atomically(self, migration: LoadedMigration) -> int | None:
        version = migration.script.version
        with self._foreign_keys_suspended(), self.write_transaction():
            if recorder.recorded_state(self.conn, version) is not None:
                return None
            self._emit(EventKind.STARTED, migration)
            started = time.monotonic()
            with self._orphan_watch() as might_orphan:
                self._run_upgrade(migration, rolled_back=True)
                self._check_foreign_keys(migration, might_orphan())
            duration = _elapsed_ms(started)
            self._record(migration, State.APPLIED, duration)
        return duration

    @contextmanager
    def _foreign_keys_suspended(self) -> Iterator[None]:
        """On SQLite, run the migration with foreign-key enforcement off.

        SQLite's documented table rebuild (new table, copy, drop, rename) needs it: with
        enforcement on, dropping a referenced table deletes or refuses its children. The
        pragma only takes effect outside a transaction, so it is set here, around it, and
        ``_check_foreign_keys`` proves nothing was broken before the commit.
        """
        if self.target.backend != "sqlite":
            yield
            return
        set_foreign_keys(self.conn, False)
        try:
            yield
        finally:
            if not self.conn.invalidated:
                set_foreign_keys(self.conn, True)

    @contextmanager
    def _orphan_watch(self) -> Iterator[Callable[[], bool]]:
        """On SQLite, tell afterwards whether the body could have left a row pointing nowhere.

        With enforcement off only two things can: a changed row, or a dropped table. SQLite
        counts the first and its authorizer reports the second, so a migration that did
        neither (an added column, a new index) can skip the check, which reads every row that
        has a foreign key and so costs seconds on a big database.
        """
        if self.target.backend != "sqlite":
            yield lambda: False
            return
        driver = self.conn.connection.dbapi_connection
        assert driver is not None
        changes = getattr(driver, "total_changes", None)
        dropped = False

        def authorize(action: int, *_details: object) -> int:
            nonlocal dropped
            dropped = dropped or action in (
                sqlite3.SQLITE_DROP_TABLE,
                sqlite3.SQLITE_DROP_TEMP_TABLE,
            )
            return sqlite3.SQLITE_OK

        driver.set_authorizer(authorize)
        try:
            yield lambda: dropped or changes is None or driver.total_changes != changes
        finally:
            driver.set_authorizer(None)

    def _check_foreign_keys(self, migration: LoadedMigration, might_orphan: bool) -> None:
        """Fail the migration if, with enforcement off, it left a row pointing nowhere."""
        if not might_orphan:
            return
        broken = broken_foreign_keys(self.conn)
        if broken:
            raise self._failure(migration, RuntimeError(broken), rolled_back=True)

    def _apply_with_marker(self, migration: LoadedMigration) -> int | None:
        version = migration.script.version
        with self.write_transaction():
            if recorder.recorded_state(self.conn, version) is not None:
                return None
            self._record(migration, State.STARTED, None)
        self._emit(EventKind.STARTED, migration)
        started = time.monotonic()
        if migration.transactional:
            # DML inside still commits with the finishing mark; DDL commits on its own.
            with self.conn.begin():
                self._run_upgrade(migration, rolled_back=False)
                recorder.mark_finished(self.conn, version, _elapsed_ms(started))
        else:
            with autocommit(self.conn, self.target.backend):
                self._run_upgrade(migration, rolled_back=False)
            with self.conn.begin():
                recorder.mark_finished(self.conn, version, _elapsed_ms(started))
        return _elapsed_ms(started)

    def _apply_backfill(self, migration: LoadedMigration) -> int | None:
        """The schema part once, then one short transaction per batch, each advancing the
        cursor it commits with; the version counts as applied only after the last batch."""
        version, batches, backfill = migration.script.version, migration.batches, migration.backfill
        assert batches is not None and backfill is not None
        with self.write_transaction():
            state = recorder.recorded_state(self.conn, version)
            if state is not None and state != State.STARTED:
                return None
            if state is None:
                self._record(migration, State.STARTED, None)
            cursor = recorder.read_cursors(self.conn).get(version)
        self._emit(EventKind.STARTED, migration)
        started = time.monotonic()
        if cursor is None:
            with self._foreign_keys_suspended(), self.write_transaction():
                with self._orphan_watch() as might_orphan:
                    self._run_upgrade(migration, rolled_back=self.target.transactional_ddl)
                    self._check_foreign_keys(migration, might_orphan())
                recorder.start_cursor(self.conn, version)
            cursor = BackfillCursor(version, None, 0)
        low, done = cursor.last_key, cursor.rows_done
        with self.write_transaction():
            low = start_key(self.conn, batches) if low is None else low
            total = done + (0 if low is None else count_between(self.conn, batches, low))
        while low is not None:
            with self.write_transaction():
                high = next_high(self.conn, batches, low)
                if high is None:
                    break
                rows = count_between(self.conn, batches, low, high)
                self._run_batch(migration, backfill, low, high)
                done += rows
                recorder.advance_cursor(self.conn, version, high, done)
            low = high
            self._emit(EventKind.PROGRESS, migration, rows_done=done, rows_total=max(total, done))
        duration = _elapsed_ms(started)
        with self.write_transaction():
            recorder.mark_finished(self.conn, version, duration)
            recorder.drop_cursor(self.conn, version)
        return duration

    def _run_batch(
        self, migration: LoadedMigration, backfill: BackfillFunction, low: Any, high: Any
    ) -> None:
        try:
            with forbid_commit(self.conn):
                backfill(self.conn, low, high)
        except Exception as error:
            reason = first_line(error.orig if isinstance(error, exc.DBAPIError) else error)
            raise MigrationFailed(
                f"{migration.script.name} failed in the batch of keys above {low!r}: {reason}; "
                "that batch was rolled back, earlier batches are kept, and the next "
                "'zos db migrate' resumes from it"
            ) from error

    def _run_upgrade(self, migration: LoadedMigration, *, rolled_back: bool) -> None:
        if migration.upgrade is None:
            return
        try:
            if migration.transactional:
                with forbid_commit(self.conn):
                    migration.upgrade(self.conn)
                if not self.conn.in_transaction():
                    raise RuntimeError("upgrade() must not end its transaction (it rolled back)")
            else:
                migration.upgrade(self.conn)
        except Exception as error:
            raise self._failure(migration, error, rolled_back) from error

    def _failure(
        self, migration: LoadedMigration, error: Exception, rolled_back: bool
    ) -> MigrationFailed:
        reason = first_line(error.orig if isinstance(error, exc.DBAPIError) else error)
        if rolled_back:
            state = "it was rolled back and the database is unchanged by it"
        else:
            state = (
                "this database cannot roll back schema changes, so it may be partly applied "
                "and is marked unfinished; see 'zos db status' and 'zos db repair'"
            )
        return MigrationFailed(f"{migration.script.name} failed: {reason}; {state}")

    def _record(self, migration: LoadedMigration, state: State, duration: int | None) -> None:
        recorder.record(
            self.conn,
            version=migration.script.version,
            description=migration.description,
            checksum=migration.script.checksum,
            state=state,
            duration_ms=duration,
        )

    @contextmanager
    def write_transaction(self) -> Iterator[None]:
        """A transaction that holds the database's write lock from its first statement."""
        if self.target.backend != "sqlite":
            with self.conn.begin():
                yield
            return
        self._begin_immediate()
        try:
            yield
        except BaseException:
            self.conn.rollback()
            raise
        self.conn.commit()

    def _begin_immediate(self) -> None:
        # SQLite's busy handler waits silently; wait a little first, so a runner blocked by
        # another can say so, then wait out the rest of the lock timeout.
        self.conn.execution_options(**{SQLITE_BEGIN_IMMEDIATE: True})
        waits = (_SQLITE_FIRST_WAIT_MS, int(self.lock_timeout * 1000))
        for attempt, wait_ms in enumerate(waits):
            set_busy_timeout(self.conn, wait_ms)
            try:
                self.conn.begin()
                return
            except exc.OperationalError as error:
                if "locked" not in str(error.orig) and "busy" not in str(error.orig):
                    raise
                if attempt == 0:
                    self.announce_wait()
        raise LockTimeout(
            "another migration or writer still holds the SQLite write lock after "
            f"{self.lock_timeout:g} s; wait for it to finish, or raise "
            "database.lock_timeout_seconds"
        )

    def _emit(
        self,
        kind: EventKind,
        migration: LoadedMigration,
        duration_ms: int | None = None,
        *,
        rows_done: int | None = None,
        rows_total: int | None = None,
    ) -> None:
        self.on_event(
            MigrationEvent(
                kind,
                migration.script.version,
                migration.description,
                duration_ms,
                rows_done=rows_done,
                rows_total=rows_total,
            )
        )


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
