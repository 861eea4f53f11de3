"""Transaction guards a migration runs under: no commit from inside ``upgrade()``, statements
that must run outside a transaction, and SQLite's foreign-key check.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection

from zos.database import SQLITE_AUTOCOMMIT


def broken_foreign_keys(conn: Connection) -> str | None:
    """On SQLite, a sentence about rows whose foreign keys point nowhere, or None."""
    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
    if not broken:
        return None
    tables = sorted({f"{row[0]} -> {row[2]}" for row in broken})
    return (
        f"it would break foreign keys: {len(broken)} row(s) in {', '.join(tables)} "
        "point at rows that do not exist"
    )


class CommitForbidden(RuntimeError):
    """A migration tried to commit the transaction that must also hold its version record."""


@contextmanager
def forbid_commit(conn: Connection) -> Iterator[None]:
    """Make ``conn.commit()`` raise while the body runs, before anything reaches the database."""

    def refuse() -> None:
        raise CommitForbidden("upgrade() must not commit; zos commits it with its version record")

    # An instance attribute shadows the method for this connection only. (A "commit" event
    # listener that raises would leave SQLAlchemy's transaction in an unusable state.)
    conn.commit = refuse  # type: ignore[method-assign]
    try:
        yield
    finally:
        del conn.commit


@contextmanager
def autocommit(conn: Connection, backend: str) -> Iterator[None]:
    """Let each statement commit on its own, for what cannot run inside a transaction."""
    if backend == "sqlite":
        # pysqlite's own autocommit switch would undo the BEGIN handling in zos.database.
        conn.execution_options(**{SQLITE_AUTOCOMMIT: True})
        try:
            with conn.begin():
                yield
        finally:
            conn.execution_options(**{SQLITE_AUTOCOMMIT: False})
        return
    default = conn.default_isolation_level
    conn.execution_options(isolation_level="AUTOCOMMIT")
    try:
        with conn.begin():
            yield
    finally:
        conn.execution_options(isolation_level=default or "READ COMMITTED")
