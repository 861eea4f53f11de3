"""One migration run at a time, with what each database offers, released on every exit path.

PostgreSQL and MariaDB hold a session-level advisory lock on the migration's own connection,
so a killed runner's lock dies with its connection. SQLite has no such lock: there the
executor takes the write lock per migration (``BEGIN IMMEDIATE``) and re-checks the version.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

from sqlalchemy import Connection, exc, text

from zos.errors import LockTimeout

LOCK_NAME = "zos_migrate"
_POLL_SECONDS = 0.1


class DialectLock(Protocol):
    def try_acquire(self, conn: Connection) -> bool: ...

    def release(self, conn: Connection) -> None: ...

    def holder(self, conn: Connection) -> str | None: ...


class _PostgresLock:
    # Advisory locks are scoped to the current database, so one fixed key suffices.
    key = int.from_bytes(hashlib.sha256(LOCK_NAME.encode()).digest()[:8], "big", signed=True)

    def try_acquire(self, conn: Connection) -> bool:
        got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar()
        conn.commit()
        return bool(got)

    def release(self, conn: Connection) -> None:
        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
        conn.commit()

    def holder(self, conn: Connection) -> str | None:
        pid = conn.execute(
            text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND objid = (:k & 4294967295) AND classid = ((:k >> 32) & 4294967295) "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ),
            {"k": self.key},
        ).scalar()
        conn.commit()
        return None if pid is None else f"server process {pid}"


class _MySQLLock:
    # GET_LOCK names are server-wide, so the database name is part of the lock's name.
    def _name(self, conn: Connection) -> str:
        database = conn.execute(text("SELECT DATABASE()")).scalar() or ""
        return f"{LOCK_NAME}:{hashlib.sha256(str(database).encode()).hexdigest()[:32]}"

    def try_acquire(self, conn: Connection) -> bool:
        got = conn.execute(text("SELECT GET_LOCK(:n, 0)"), {"n": self._name(conn)}).scalar()
        conn.commit()
        return got == 1

    def release(self, conn: Connection) -> None:
        conn.execute(text("SELECT RELEASE_LOCK(:n)"), {"n": self._name(conn)})
        conn.commit()

    def holder(self, conn: Connection) -> str | None:
        who = conn.execute(text("SELECT IS_USED_LOCK(:n)"), {"n": self._name(conn)}).scalar()
        conn.commit()
        return None if who is None else f"connection {who}"


def _lock_for(backend: str) -> DialectLock | None:
    if backend == "postgresql":
        return _PostgresLock()
    if backend == "mysql":
        return _MySQLLock()
    return None


@contextmanager
def migration_lock(
    conn: Connection,
    backend: str,
    timeout: float,
    on_wait: Callable[[], None] = lambda: None,
) -> Iterator[None]:
    """Hold the run-wide migration lock on ``conn`` for the body of the ``with``.

    ``on_wait`` is called once if another runner holds it. SQLite needs no run-wide lock.

    Raises:
        LockTimeout: the lock was still held by another runner after ``timeout`` seconds.
    """
    lock = _lock_for(backend)
    if lock is None:
        yield
        return
    _acquire(conn, lock, timeout, on_wait)
    try:
        yield
    finally:
        _release_quietly(conn, lock)


def _acquire(
    conn: Connection, lock: DialectLock, timeout: float, on_wait: Callable[[], None]
) -> None:
    deadline = time.monotonic() + timeout
    if lock.try_acquire(conn):
        return
    on_wait()
    while time.monotonic() < deadline:
        time.sleep(_POLL_SECONDS)
        if lock.try_acquire(conn):
            return
    holder = lock.holder(conn)
    held_by = f" (held by {holder})" if holder else ""
    raise LockTimeout(
        f"another migration still holds the lock after {timeout:g} s{held_by}; wait for it "
        "to finish, or raise database.lock_timeout_seconds"
    )


def _release_quietly(conn: Connection, lock: DialectLock) -> None:
    # A broken connection has already dropped its session lock on the server.
    if conn.closed or conn.invalidated:
        return
    try:
        if conn.in_transaction():
            conn.rollback()
        lock.release(conn)
    except exc.DBAPIError:
        pass
