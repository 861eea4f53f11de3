"""Bounded lock waits for each migration: a schema change that cannot get its table's lock
within ``database.ddl_lock_timeout_seconds`` (or the migration's ``DDL_LOCK_TIMEOUT_SECONDS``)
gives up, so the application's queries never queue behind it for longer than that, and the
migration is tried again after a pause, ``DDL_LOCK_RETRIES`` times (default 3).

A try that gave up leaves nothing to repair: where the migration and its record are one
transaction (SQLite, PostgreSQL) it was rolled back; where a ``started`` mark commits first
(MariaDB/MySQL, ``TRANSACTIONAL = False``), the mark is written only after the wait for the
first change's table lock (``marker.py``), so a run that gives up, or is stopped by any signal
while it waits, has marked nothing; a backfill resumes from its last committed batch. A mark
stays when a lock wait is given up after the migration changed something, and on PostgreSQL
for ``TRANSACTIONAL = False`` (a failed ``CREATE INDEX CONCURRENTLY`` leaves an invalid index).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, event

from zos.errors import MigrationFailed
from zos.migrator import recorder
from zos.migrator.events import EventKind, MigrationEvent
from zos.migrator.guard import failure_reason
from zos.migrator.marker import may_change_something
from zos.migrator.records import State

if TYPE_CHECKING:
    from zos.migrator.dialects.lockwaits import Blocked
    from zos.migrator.discovery import LoadedMigration
    from zos.migrator.executor import Executor

DEFAULT_RETRIES = 3
# Pauses between tries double from the first, up to the last.
FIRST_PAUSE_SECONDS = 0.5
MAX_PAUSE_SECONDS = 30.0
_NOTHING_CHANGED = "nothing was changed and nothing needs repair"
_RESUMES = "its committed batches are kept and the next 'zos db migrate' resumes it"


def pause_seconds(attempt: int) -> float:
    """The pause after the ``attempt``-th try (from 0) gave up: 0.5 s, 1 s, 2 s … up to 30 s."""
    return min(MAX_PAUSE_SECONDS, FIRST_PAUSE_SECONDS * float(2**attempt))


def apply_bounded(ex: Executor, migration: LoadedMigration, apply: Callable[[], int]) -> int:
    """Run ``apply`` (one strategy applying ``migration``) with lock waits bounded, trying again
    after a pause while the only failure is a lock wait that gave up.

    Returns what ``apply`` returns (the duration in milliseconds).

    Raises:
        MigrationFailed: every try gave up waiting for a lock; the one line names the table
            and the session holding it, and says that nothing needs repair. Whatever else
            ``apply`` raises passes through unchanged.
    """
    seconds = migration.ddl_lock_timeout_seconds or ex.ddl_lock_timeout_seconds
    retries = DEFAULT_RETRIES if migration.ddl_lock_retries is None else migration.ddl_lock_retries

    def tell(blocked: Blocked) -> None:
        _tell(ex, migration, str(blocked))

    for attempt in range(retries + 1):
        watch: Any = None
        writes = _Writes(ex.conn)
        try:
            # Each try starts where the run began, whatever the previous migration changed.
            ex.dialect.restore_session(ex.conn)
            with (
                ex.dialect.bounded_lock_waits(ex.conn, seconds),
                ex.dialect.watch_lock_waits(ex.engine, ex.conn, seconds, tell) as watch,
                writes,
            ):
                return apply()
        except MigrationFailed as failed:
            if not ex.dialect.is_lock_timeout(failed):
                raise
            blocked: Blocked | None = None if watch is None else watch.last
            state = _settle(ex, migration, wrote=writes.count > 0)
            if state is None:
                # It changed something before it gave up: not tried again, and its own error
                # says what it left; said with the table and the session, not the driver's code.
                raise _gave_up_after_changes(migration, failed, blocked, seconds) from failed
            if attempt == retries:
                raise _gave_up(migration, blocked, seconds, retries + 1, state) from failed
            pause = pause_seconds(attempt)
            _tell(
                ex,
                migration,
                f"gave up waiting for a lock after {seconds:g} s; trying again in {pause:g} s "
                f"(try {attempt + 2} of {retries + 1})",
            )
            with ex.interrupts.interruptible():
                time.sleep(pause)
    raise AssertionError("unreachable: the last try returns or raises")


def _gave_up(
    migration: LoadedMigration, blocked: Blocked | None, seconds: float, tries: int, state: str
) -> MigrationFailed:
    times = "once" if tries == 1 else f"{tries} times"
    return MigrationFailed(
        f"{migration.script.name} gave up {_waiting(blocked)} after {seconds:g} s, {times}; "
        f"{state}; {_advice(blocked)}"
    )


def _gave_up_after_changes(
    migration: LoadedMigration, failed: MigrationFailed, blocked: Blocked | None, seconds: float
) -> MigrationFailed:
    """``failed`` (the executor's "<name> failed: <driver's words>; <state>; …") with the lock
    wait it was in words: the table and the session holding it."""
    cause = failed.__cause__
    said = f"{migration.script.name} failed: {failure_reason(cause)}; " if cause else None
    if said is None or not failed.message.startswith(said):
        return failed  # not the executor's words: nothing to replace
    left = failed.message[len(said) :]
    return MigrationFailed(
        f"{migration.script.name} gave up {_waiting(blocked)} after {seconds:g} s, after it "
        f"had changed something, so it was not tried again; {left}"
    )


def _waiting(blocked: Blocked | None) -> str:
    return str(blocked) if blocked else "waiting for a lock (the server did not say whose)"


def _advice(blocked: Blocked | None) -> str:
    if blocked is not None and not blocked.certain:
        # A candidate, not a fact: ending it might stop an innocent session.
        return (
            "make sure that session holds the lock before ending it (MariaDB names the holder "
            "only with the metadata_lock_info plugin), or run 'zos db migrate' again when the "
            "holder is done"
        )
    return "end that session or run 'zos db migrate' again when it is done"


def _tell(ex: Executor, migration: LoadedMigration, detail: str) -> None:
    ex.on_event(
        MigrationEvent(
            EventKind.LOCK_WAIT, migration.script.version, migration.description, detail=detail
        )
    )


def _settle(ex: Executor, migration: LoadedMigration, *, wrote: bool) -> str | None:
    """After a try gave up: the state it left when another try may follow, else None.

    A ``started`` mark with no cursor, from a try that changed nothing, is removed.
    """
    version = migration.script.version
    with ex.fresh_transaction() as conn:
        state = recorder.recorded_state(conn, version)
        if state is None:
            return _NOTHING_CHANGED
        if state != State.STARTED:
            return None
        if recorder.read_cursor(conn, version) is not None:
            return _RESUMES
        if wrote or not (migration.transactional or ex.dialect.failed_statement_leaves_nothing):
            return None
        recorder.forget(conn, version)
        return _NOTHING_CHANGED


class _Writes:
    """Counts the statements run on a connection that may have changed something other than
    zos's own tables (a ``started`` mark is removed only when there are none)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.count = 0

    def _seen(self, *args: Any) -> None:
        if may_change_something(str(args[2])):
            self.count += 1

    def __enter__(self) -> _Writes:
        event.listen(self.conn, "after_cursor_execute", self._seen)
        return self

    def __exit__(self, *_exc: object) -> None:
        event.remove(self.conn, "after_cursor_execute", self._seen)
