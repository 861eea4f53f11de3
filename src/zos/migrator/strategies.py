"""The three ways a migration is applied, each returning its duration in milliseconds:

- atomically: the migration and its version row in one transaction (SQLite, PostgreSQL);
- with a marker: a ``started`` row committed first, ``applied`` after (MariaDB/MySQL, whose DDL
  commits at once, and ``TRANSACTIONAL = False`` migrations);
- as a backfill: the schema part with its ``started`` row and cursor (atomically where DDL
  rolls back), then one short transaction per batch that moves the cursor by compare-and-set.
"""

from __future__ import annotations

import time
from typing import Any

from zos.errors import MigrationHistoryError
from zos.migrator import recorder
from zos.migrator.backfill import count_between, next_high, start_key
from zos.migrator.dialects.base import MAYBE_COMMITTED
from zos.migrator.discovery import LoadedMigration
from zos.migrator.events import EventKind
from zos.migrator.executor import (
    LOST_AT_COMMIT,
    BodyFailed,
    Executor,
    elapsed_ms,
    rollback_quietly,
)
from zos.migrator.marker import StartedMark
from zos.migrator.records import BackfillCursor, State

_NOTHING_COMMITTED = "nothing was changed and nothing needs repair"
_MARKED = (
    "it may be partly applied (this database commits schema changes at once, or the "
    "migration runs outside a transaction) and is marked unfinished; see 'zos db status' "
    "and 'zos db repair'"
)


def apply_atomically(ex: Executor, migration: LoadedMigration) -> int:
    conn, version = ex.conn, migration.script.version
    upgrade = migration.upgrade
    with ex.dialect.foreign_keys_suspended(conn):
        try:
            with ex.migration_transaction():
                if ex.prelude is not None:
                    ex.prelude(conn)
                recorder.ensure_unrecorded(conn, version)
                ex.emit(EventKind.STARTED, migration)
                started = time.monotonic()
                if upgrade is not None:
                    ex.run_body(migration, lambda: upgrade(conn))
                duration = elapsed_ms(started)
                ex.record(migration, State.APPLIED, duration)
        except BodyFailed as failed:
            rollback_quietly(conn)
            raise ex.failure(migration, failed, ex.rolled_back_or_marked(migration, failed)) from (
                failed.error
            )
    ex.prelude = None  # committed with the migration
    return duration


def apply_with_marker(ex: Executor, migration: LoadedMigration) -> int:
    conn, version = ex.conn, migration.script.version
    upgrade = migration.upgrade
    with ex.transaction():
        recorder.ensure_unrecorded(conn, version)
    mark = StartedMark(ex, migration)
    ex.emit(EventKind.STARTED, migration)
    started = time.monotonic()
    try:
        if migration.transactional:
            # DML inside still commits together with the marks.
            with ex.migration_transaction():
                if upgrade is not None:
                    with mark.before_first_change(in_transaction=True):
                        ex.run_body(migration, lambda: upgrade(conn))
                mark.write()
                recorder.mark_finished(conn, version, elapsed_ms(started))
        else:
            with ex.dialect.autocommit(conn):
                if upgrade is not None:
                    with mark.before_first_change(in_transaction=False):
                        ex.run_body(migration, lambda: upgrade(conn), in_transaction=False)
            with ex.migration_transaction():
                mark.write()
                recorder.mark_finished(conn, version, elapsed_ms(started))
    except BodyFailed as failed:
        rollback_quietly(conn)
        raise ex.failure(migration, failed, _left_by(mark, failed)) from failed.error
    return elapsed_ms(started)


def _left_by(mark: StartedMark, failed: BodyFailed) -> str:
    """What a failed marked migration left."""
    if failed.left == LOST_AT_COMMIT:
        return (
            "the connection was lost while its record committed, so it may be applied and "
            "recorded, or marked unfinished; see 'zos db status' and 'zos db repair'"
        )
    return _MARKED if mark.kept_after_failure(failed) else _NOTHING_COMMITTED


def apply_backfill(ex: Executor, migration: LoadedMigration) -> int:
    conn, version = ex.conn, migration.script.version
    with ex.transaction():
        state = recorder.recorded_state(conn, version)
        cursor = recorder.read_cursor(conn, version)
    if state is not None and (state != State.STARTED or cursor is None):
        raise MigrationHistoryError(
            f"{migration.script.name} is recorded as {state} with no backfill cursor, so it "
            "cannot be resumed; see 'zos db status'"
        )
    ex.emit(EventKind.STARTED, migration)
    started = time.monotonic()
    if cursor is None:
        cursor = _start(ex, migration)
    batches, backfill = migration.batches, migration.backfill
    assert batches is not None and backfill is not None
    with ex.transaction():
        first = start_key(conn, batches) if cursor.last_key is None else cursor.last_key
        left = 0 if first is None else count_between(conn, batches, first)
    total = cursor.rows_done + left
    while True:
        low = cursor.last_key
        try:
            with ex.migration_transaction():
                cursor = _reread(conn, cursor)
                low = start_key(conn, batches) if cursor.last_key is None else cursor.last_key
                high = None if low is None else next_high(conn, batches, low)
                if high is None:
                    break
                rows = count_between(conn, batches, low, high)
                # The cursor moves first: the batch then runs in a transaction that has
                # written, whose identity the escape check can compare.
                recorder.advance_cursor(conn, cursor, high, rows)
                ex.run_body(migration, _batch(backfill, conn, low, high), batch=True)
        except BodyFailed as failed:
            rollback_quietly(conn)
            raise ex.failure(migration, failed, _batch_state(ex, migration, failed, low)) from (
                failed.error
            )
        cursor = BackfillCursor(version, high, cursor.rows_done + rows)
        done = cursor.rows_done
        ex.emit(EventKind.PROGRESS, migration, rows_done=done, rows_total=max(total, done))
    duration = elapsed_ms(started)
    try:
        with ex.migration_transaction():
            recorder.mark_finished(conn, version, duration)
            recorder.drop_cursor(conn, version)
    except BodyFailed as failed:
        after = _UNFINISHED_RECORD
        if failed.left == LOST_AT_COMMIT:
            after = "every batch is committed; the connection was lost while its record was"
            after += ", so 'zos db status' says whether it is finished"
        raise ex.failure(migration, failed, after) from failed.error
    return duration


_UNFINISHED_RECORD = (
    "every batch is committed but its record is not, so it stays unfinished; the next "
    "'zos db migrate' finds no rows left and records it"
)


def _start(ex: Executor, migration: LoadedMigration) -> BackfillCursor:
    """The schema part, the ``started`` row and the cursor: one transaction where DDL rolls
    back, so a failure or a kill leaves nothing to repair; otherwise the mark comes first."""
    conn, version = ex.conn, migration.script.version
    upgrade = migration.upgrade
    if ex.dialect.transactional_ddl:
        with ex.dialect.foreign_keys_suspended(conn):
            try:
                with ex.migration_transaction():
                    recorder.ensure_unrecorded(conn, version)
                    ex.record(migration, State.STARTED, None)
                    if upgrade is not None:
                        ex.run_body(migration, lambda: upgrade(conn))
                    recorder.start_cursor(conn, version)
            except BodyFailed as failed:
                rollback_quietly(conn)
                state = ex.rolled_back_or_marked(migration, failed)
                raise ex.failure(migration, failed, state) from failed.error
    else:
        with ex.transaction():
            recorder.ensure_unrecorded(conn, version)
        mark = StartedMark(ex, migration)
        try:
            with ex.migration_transaction():
                if upgrade is not None:
                    with mark.before_first_change(in_transaction=True):
                        ex.run_body(migration, lambda: upgrade(conn))
                mark.write()
                recorder.start_cursor(conn, version)
        except BodyFailed as failed:
            rollback_quietly(conn)
            raise ex.failure(migration, failed, _left_by(mark, failed)) from failed.error
    return BackfillCursor(version, None, 0)


def _batch_state(ex: Executor, migration: LoadedMigration, failed: BodyFailed, low: Any) -> str:
    """What a failed batch left; a batch that committed part of itself must not be resumed."""
    if failed.left == LOST_AT_COMMIT:
        return (
            f"the connection was lost while the batch of keys above {low!r} committed; it "
            "commits with its cursor, so the next 'zos db migrate' resumes after the last "
            "batch that was committed"
        )
    if failed.left != MAYBE_COMMITTED:
        return (
            f"the batch of keys above {low!r} was rolled back, earlier batches are kept, and "
            "the next 'zos db migrate' resumes from it"
        )
    version = migration.script.version
    with ex.fresh_transaction() as conn:
        recorder.drop_cursor(conn, version)
    return (
        f"the batch of keys above {low!r} committed part of its work itself, so it may be "
        "partly applied; the backfill is marked unfinished and will not resume by itself: "
        f"check its rows, then run 'zos db repair --applied {version}' or undo it and run "
        f"'zos db repair --forget {version}'"
    )


def _batch(backfill: Any, conn: Any, low: Any, high: Any) -> Any:
    return lambda: backfill(conn, low, high)


def _reread(conn: Any, expected: BackfillCursor) -> BackfillCursor:
    """The cursor as stored, which must be where this runner left it."""
    stored = recorder.read_cursor(conn, expected.version, table_exists=True)
    if stored != expected:
        raise MigrationHistoryError(
            f"the backfill cursor of version {expected.version} moved under this runner "
            f"(expected {expected}, found {stored}): another process is running it; stopped"
        )
    return stored
