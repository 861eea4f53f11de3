"""Dry runs: run pending migrations where the result can be thrown away, and report each one's
time, SQL and error. SQLite rehearses on a copy; PostgreSQL in a transaction that is rolled
back; MariaDB/MySQL commit DDL at once, so there only the plan is shown.

A rehearsal promises no more than it ran: a backfill runs its first ``REHEARSED_BATCHES``
batches only (so the live server is never locked longer than by the real run's first batches),
with the whole table's time projected from their rate. Each migration ends with what its commit
would check (deferred constraints), and the next one starts without what the real run's fresh
session would not have (temporary tables, prepared statements, cursors). The rehearsal stops at
the first migration that runs outside a transaction, or that did something later statements see
only once it is committed (a new enum value), listing the rest as not rehearsed, since they
would run on a schema that lacks its change; and at the first lock it could not get in time,
which proves nothing about the real run, which waits and tries again.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, event

from zos.migrator.backfill import count_between, next_high, start_key
from zos.migrator.dialects import Dialect, Watch
from zos.migrator.dialects.base import MAYBE_COMMITTED
from zos.migrator.dialects.lockwaits import Blocked
from zos.migrator.discovery import LoadedMigration
from zos.migrator.guard import failure_reason, owned_transaction
from zos.migrator.interrupts import Interrupts, RunInterrupted
from zos.migrator.lockwait import DEFAULT_RETRIES
from zos.snapshot import sqlite_copy

__all__ = ["LockBusy", "RehearsedMigration", "rehearse", "sqlite_copy"]


# A backfill is rehearsed on this many batches, never the whole table.
REHEARSED_BATCHES = 3


@dataclass(frozen=True)
class BackfillSample:
    """How much of a backfill a rehearsal ran, and the whole table's time projected from it."""

    rows_done: int
    rows_total: int
    projected_ms: int | None  # rows_total at the rehearsed rate; None when no row was done


@dataclass(frozen=True)
class RehearsedMigration:
    """What one pending migration did in the rehearsal (or why it was not run)."""

    version: int
    description: str
    duration_ms: int | None = None
    statements: tuple[str, ...] = ()
    error: str | None = None
    not_run: str | None = None
    backfill: BackfillSample | None = None
    # It escaped the rehearsal's transaction through a door only noticed afterwards, so part
    # of it may have been committed for good.
    changed_database: bool = False
    # It gave up waiting for a lock: what for ("waiting for a lock on widgets (held by …)"),
    # with the real run's bound; nothing is known about whether it would work.
    lock_busy: LockBusy | None = None
    # It ran, but what follows cannot be rehearsed after it: why.
    ends_rehearsal: str | None = None


@dataclass(frozen=True)
class LockBusy:
    """A lock a rehearsed migration gave up waiting for, and how the real run would wait."""

    waiting: str  # "waiting for a lock on widgets (held by pid 4711, idle in transaction …)"
    seconds: float  # each wait's bound
    tries: int  # how many times the real run would wait that long before it gives up


def rehearse(
    conn: Connection,
    dialect: Dialect,
    pending: list[LoadedMigration],
    *,
    adopting: bool,
    interrupts: Interrupts,
    lock_timeout_seconds: float | None = None,
) -> list[RehearsedMigration]:
    """Run ``pending`` inside one transaction on ``conn`` and roll it all back.

    Stops at the first failure: later migrations would run on a schema that is not theirs.
    ``adopting`` (an unversioned database) first asks each migration's ``check()``, as a real
    run would. Each migration runs under the real run's transaction discipline, so one that
    would commit is refused before its COMMIT reaches the database, and foreign keys are
    suspended and checked as the real run does; then comes what its commit would check. With
    ``lock_timeout_seconds`` (or the migration's own ``DDL_LOCK_TIMEOUT_SECONDS``), every lock
    wait gives up after that long, as in the real run; there it would be tried again, so the
    rehearsal stops there with ``lock_busy`` and fails nothing. A signal stops it at once
    (``RunInterrupted``), rolled back.
    """
    with dialect.foreign_keys_suspended(conn):
        return _rehearse(
            conn,
            dialect,
            pending,
            adopting=adopting,
            interrupts=interrupts,
            bound=lock_timeout_seconds,
        )


def _rehearse(
    conn: Connection,
    dialect: Dialect,
    pending: list[LoadedMigration],
    *,
    adopting: bool,
    interrupts: Interrupts,
    bound: float | None = None,
) -> list[RehearsedMigration]:
    results: list[RehearsedMigration] = []
    engine = conn.engine
    with conn.begin() as transaction:
        identity = dialect.transaction_identity(conn)
        for migration in pending:
            version, description = migration.script.version, migration.description
            started = time.monotonic()
            statements: list[str] = []
            seconds = migration.ddl_lock_timeout_seconds or bound
            blocked: list[Blocked] = []
            try:
                if seconds is not None:
                    # For this transaction only (a dry run may go through a transaction
                    # pooler), and per migration, as the real run bounds each one.
                    dialect.bound_lock_waits_here(conn, seconds)
                check = migration.check
                if adopting and check is not None:
                    present: list[bool] = []
                    with _guarded(conn, dialect, interrupts):
                        present.append(bool(check(conn)))
                    _still_in(dialect, conn, identity)
                    adopting = present[0]
                else:
                    adopting = False
                if adopting:
                    results.append(
                        RehearsedMigration(
                            version, description, not_run="already present; would be adopted"
                        )
                    )
                    continue
                if not migration.transactional:
                    # What follows would run on a schema that lacks this one's change: a
                    # failure there would be false, and so would a success. Stop here.
                    results.extend(_not_rehearsed(migration, pending))
                    break
                with _lock_waits(conn, dialect, seconds, blocked):
                    before = dialect.rehearsal_mark(conn)
                    with _capture(conn, statements), _guarded(conn, dialect, interrupts) as watch:
                        sample = _run_sampled(conn, migration)
                    _still_in(dialect, conn, identity)
                    broken = dialect.broken_foreign_keys(conn, watch)
                    if broken:
                        raise RuntimeError(broken)
                    # As the real run: the runner's session settings for what follows (which
                    # resets the lock-wait bound too), then what the commit would check and
                    # what the next migration's session would not have.
                    dialect.after_body(conn)
                    if seconds is not None:
                        dialect.bound_lock_waits_here(conn, seconds)
                    ends = dialect.as_if_committed(conn, before)
            except BaseException as error:  # a migration's code may raise anything at all
                signum = interrupts.as_interruption(error)
                if signum is not None:
                    raise RunInterrupted(signum) from error
                left = None
                with contextlib.suppress(Exception):
                    left = dialect.left_transaction(engine, conn, identity, failed=True)
                if seconds is not None and left is None and dialect.is_lock_timeout(error):
                    results.extend(_lock_busy(migration, pending, _ms(started), blocked, seconds))
                    break
                results.append(
                    RehearsedMigration(
                        version,
                        description,
                        _ms(started),
                        tuple(statements),
                        error=failure_reason(error),
                        changed_database=left == MAYBE_COMMITTED,
                    )
                )
                break
            results.append(
                RehearsedMigration(
                    version,
                    description,
                    _ms(started),
                    tuple(statements),
                    backfill=sample,
                    ends_rehearsal=ends,
                )
            )
            if ends is not None:
                # Later migrations would see this one's change as if uncommitted: a failure
                # there would be false, and so would a success. Stop here.
                results.extend(_following(migration, pending, "which cannot be rehearsed"))
                break
        with contextlib.suppress(Exception):
            transaction.rollback()
    return results


@contextmanager
def _guarded(conn: Connection, dialect: Dialect, interrupts: Interrupts) -> Iterator[Watch]:
    """A migration's code under the real run's discipline, stoppable by a signal."""
    engine = conn.engine
    with (
        dialect.watch(conn) as watch,
        owned_transaction(conn),
        interrupts.interruptible(lambda: dialect.cancel(engine, conn)),
    ):
        yield watch


def _still_in(dialect: Dialect, conn: Connection, identity: object) -> None:
    left = dialect.left_transaction(conn.engine, conn, identity, failed=False)
    if left is not None:
        raise RuntimeError(
            "it ended the rehearsal's transaction (a COMMIT or ROLLBACK reached the database)"
        )


def _not_rehearsed(
    migration: LoadedMigration, pending: list[LoadedMigration]
) -> list[RehearsedMigration]:
    """The migration that cannot be rehearsed, and every one after it, each saying why."""
    return [
        RehearsedMigration(
            migration.script.version,
            migration.description,
            not_run="runs outside a transaction; not rehearsed",
        ),
        *_following(migration, pending, "which cannot be rehearsed"),
    ]


def _following(
    migration: LoadedMigration, pending: list[LoadedMigration], why: str
) -> list[RehearsedMigration]:
    """Every pending migration after ``migration``, listed as not rehearsed because of it."""
    version = migration.script.version
    return [
        RehearsedMigration(
            m.script.version, m.description, not_run=f"not rehearsed: follows {version:03d}, {why}"
        )
        for m in pending
        if m.script.version > version
    ]


def _lock_busy(
    migration: LoadedMigration,
    pending: list[LoadedMigration],
    duration_ms: int,
    blocked: list[Blocked],
    seconds: float,
) -> list[RehearsedMigration]:
    """The migration whose lock wait gave up, and every one after it, not rehearsed."""
    retries = migration.ddl_lock_retries
    busy = LockBusy(
        str(blocked[-1]) if blocked else "waiting for a lock (the server did not say whose)",
        seconds,
        1 + (DEFAULT_RETRIES if retries is None else retries),
    )
    return [
        RehearsedMigration(
            migration.script.version, migration.description, duration_ms, lock_busy=busy
        ),
        *_following(migration, pending, "whose rehearsal could not get its lock"),
    ]


@contextmanager
def _lock_waits(
    conn: Connection, dialect: Dialect, seconds: float | None, blocked: list[Blocked]
) -> Iterator[None]:
    """Meanwhile, what ``conn`` waits for (the newest finding) is kept in ``blocked``."""
    if seconds is None:
        yield
        return
    with dialect.watch_lock_waits(conn.engine, conn, seconds, blocked.append) as watch:
        try:
            yield
        finally:
            if watch is not None and watch.last is not None:
                blocked.append(watch.last)


def _run_sampled(conn: Connection, migration: LoadedMigration) -> BackfillSample | None:
    """The migration's schema part, then its backfill's first ``REHEARSED_BATCHES`` batches
    only, timed: the rehearsal holds its row locks no longer than the real run's first
    batches would, and the whole table's time is projected from the rate."""
    if migration.upgrade is not None:
        migration.upgrade(conn)
    batches, backfill = migration.batches, migration.backfill
    if batches is None or backfill is None:
        return None
    low = start_key(conn, batches)
    total = 0 if low is None else count_between(conn, batches, low)
    done = 0
    started = time.monotonic()
    for _ in range(REHEARSED_BATCHES):
        high = None if low is None else next_high(conn, batches, low)
        if high is None:
            break
        done += count_between(conn, batches, low, high)
        backfill(conn, low, high)
        low = high
    took = time.monotonic() - started
    projected = None if done == 0 else int(took / done * total * 1000)
    return BackfillSample(done, total, projected)


@contextmanager
def _capture(conn: Connection, statements: list[str]) -> Iterator[list[str]]:
    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(" ".join(statement.split()))

    event.listen(conn, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(conn, "before_cursor_execute", record)


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
