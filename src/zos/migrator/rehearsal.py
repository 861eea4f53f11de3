"""Dry runs: run pending migrations where the result can be thrown away, and report each one's
time, SQL and error. SQLite rehearses on a copy; PostgreSQL in a transaction that is rolled
back; MariaDB/MySQL commit DDL at once, so there only the plan is shown.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, event

from zos.database import first_line
from zos.migrator.backfill import end_key, start_key
from zos.migrator.dialects import Dialect
from zos.migrator.discovery import LoadedMigration
from zos.migrator.guard import owned_transaction
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


def rehearse(
    conn: Connection, dialect: Dialect, pending: list[LoadedMigration], *, adopting: bool
) -> list[RehearsedMigration]:
    """Run ``pending`` inside one transaction on ``conn`` and roll it all back.

    Stops at the first failure: later migrations would run on a schema that is not theirs.
    ``adopting`` (an unversioned database) first asks each migration's ``check()``, as a real
    run would. Each migration runs under the real run's transaction discipline, so one that
    would commit is refused before its COMMIT reaches the database, and foreign keys are
    suspended and checked as the real run does.
    """
    with dialect.foreign_keys_suspended(conn):
        return _rehearse(conn, dialect, pending, adopting=adopting)


def _rehearse(
    conn: Connection,
    dialect: Dialect,
    pending: list[LoadedMigration],
    *,
    adopting: bool,
) -> list[RehearsedMigration]:
    results: list[RehearsedMigration] = []
    engine = conn.engine
    with conn.begin() as transaction:
        identity = dialect.transaction_identity(conn)
        for migration in pending:
            version, description = migration.script.version, migration.description
            adopting = adopting and migration.check is not None and migration.check(conn)
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
                        version, description, not_run="runs outside a transaction; not rehearsed"
                    )
                )
                continue
            started = time.monotonic()
            statements: list[str] = []
            try:
                with (
                    _capture(conn, statements),
                    dialect.watch(conn) as watch,
                    owned_transaction(conn),
                ):
                    _run_whole(conn, migration)
                left = dialect.left_transaction(engine, conn, identity, failed=False)
                if left is not None:
                    raise RuntimeError(
                        f"it left the rehearsal's transaction ({left}); the database may be changed"
                    )
                broken = dialect.broken_foreign_keys(conn, watch)
                if broken:
                    raise RuntimeError(broken)
            except Exception as error:
                orig = getattr(error, "orig", None) or error
                results.append(
                    RehearsedMigration(
                        version,
                        description,
                        _ms(started),
                        tuple(statements),
                        error=first_line(orig),
                    )
                )
                break
            results.append(
                RehearsedMigration(version, description, _ms(started), tuple(statements))
            )
        transaction.rollback()
    return results


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
