"""Dry runs: run pending migrations where the result can be thrown away, and report each one's
time, SQL and error. SQLite rehearses on a copy; PostgreSQL in a transaction that is rolled
back; MariaDB/MySQL commit DDL at once, so there only the plan is shown.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, event

from zos.migrator.backfill import end_key, start_key
from zos.migrator.dialects import Dialect, Watch
from zos.migrator.dialects.base import MAYBE_COMMITTED
from zos.migrator.discovery import LoadedMigration
from zos.migrator.guard import failure_reason, owned_transaction
from zos.migrator.interrupts import Interrupts, RunInterrupted
from zos.snapshot import sqlite_copy

__all__ = ["RehearsedMigration", "rehearse", "sqlite_copy"]


@dataclass(frozen=True)
class RehearsedMigration:
    """What one pending migration did in the rehearsal (or why it was not run)."""

    version: int
    description: str
    duration_ms: int | None = None
    statements: tuple[str, ...] = ()
    error: str | None = None
    not_run: str | None = None
    # It escaped the rehearsal's transaction through a door only noticed afterwards, so part
    # of it may have been committed for good.
    changed_database: bool = False


def rehearse(
    conn: Connection,
    dialect: Dialect,
    pending: list[LoadedMigration],
    *,
    adopting: bool,
    interrupts: Interrupts,
) -> list[RehearsedMigration]:
    """Run ``pending`` inside one transaction on ``conn`` and roll it all back.

    Stops at the first failure: later migrations would run on a schema that is not theirs.
    ``adopting`` (an unversioned database) first asks each migration's ``check()``, as a real
    run would. Each migration runs under the real run's transaction discipline, so one that
    would commit is refused before its COMMIT reaches the database, and foreign keys are
    suspended and checked as the real run does.
    """
    with dialect.foreign_keys_suspended(conn):
        return _rehearse(conn, dialect, pending, adopting=adopting, interrupts=interrupts)


def _rehearse(
    conn: Connection,
    dialect: Dialect,
    pending: list[LoadedMigration],
    *,
    adopting: bool,
    interrupts: Interrupts,
) -> list[RehearsedMigration]:
    results: list[RehearsedMigration] = []
    engine = conn.engine
    with conn.begin() as transaction:
        identity = dialect.transaction_identity(conn)
        for migration in pending:
            version, description = migration.script.version, migration.description
            started = time.monotonic()
            statements: list[str] = []
            try:
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
                    results.append(
                        RehearsedMigration(
                            version,
                            description,
                            not_run="runs outside a transaction; not rehearsed",
                        )
                    )
                    continue
                with _capture(conn, statements), _guarded(conn, dialect, interrupts) as watch:
                    _run_whole(conn, migration)
                _still_in(dialect, conn, identity)
                broken = dialect.broken_foreign_keys(conn, watch)
                if broken:
                    raise RuntimeError(broken)
            except BaseException as error:  # a migration's code may raise anything at all
                signum = interrupts.as_interruption(error)
                if signum is not None:
                    raise RunInterrupted(signum) from error
                left = None
                with contextlib.suppress(Exception):
                    left = dialect.left_transaction(engine, conn, identity, failed=True)
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
                RehearsedMigration(version, description, _ms(started), tuple(statements))
            )
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


def _run_whole(conn: Connection, migration: LoadedMigration) -> None:
    """The migration's schema part, then its backfill over every row at once."""
    if migration.upgrade is not None:
        migration.upgrade(conn)
    if migration.batches is None or migration.backfill is None:
        return
    low = start_key(conn, migration.batches)
    if low is not None:
        migration.backfill(conn, low, end_key(conn, migration.batches))


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
