"""SQLite: an OS file lock beside the database as the run lock, ``BEGIN IMMEDIATE`` for every
migration transaction, foreign keys suspended around it, an authorizer that denies transaction
control to the migration, and a WAL synced to disk when the run ends.

Light at import: ``status`` probes the run lock through this module without SQLAlchemy.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zos.errors import DatabaseUnavailable
from zos.migrator.dialects.base import MAYBE_COMMITTED, ROLLED_BACK, this_process

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

_DROPS = (sqlite3.SQLITE_DROP_TABLE, sqlite3.SQLITE_DROP_TEMP_TABLE)


def lock_path(database: Path) -> Path:
    """The run lock of ``database``: beside the real file, so a symlink shares its lock."""
    real = database.resolve()
    return real.with_name(real.name + ".lock")


class FileRunLock:
    """An exclusive ``flock`` on ``<database>.lock``, with the holder's details inside.

    ``flock`` rather than the filelock library: the lock must be probed read-only by
    ``status`` (a shared, non-blocking ``flock`` on a read-only descriptor), the holder's
    details live in the locked file itself, and filelock's import alone cost 72 ms, a third
    of a ``status``. The kernel drops the lock when the process dies, however it dies, and it
    never touches the database file, so the application's writers are never blocked by it.
    """

    def __init__(self, database: Path) -> None:
        self.path = lock_path(database)
        self._fd: int | None = None
        self._since = ""

    def try_acquire(self) -> bool:
        if fcntl is None:  # pragma: no cover - Windows
            raise DatabaseUnavailable("the SQLite run lock needs a POSIX system (fcntl.flock)")
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as error:
            raise DatabaseUnavailable(
                f"cannot open the run lock {self.path}: {error.strerror}"
            ) from error
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        self._since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        self.note("")
        return True

    def holder(self) -> str | None:
        return describe_holder(_read_holder(self.path))

    def note(self, activity: str) -> None:
        if self._fd is None:
            return
        data = json.dumps({"holder": this_process(), "since": self._since, "activity": activity})
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data.encode(), 0)

    def ensure_held(self) -> None:
        return None  # a held flock cannot be lost while the process lives

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the descriptor drops the flock


def probe_run_lock(database: Path) -> str | None:
    """Who holds the run lock of ``database`` now ("pid 4711 on host h"), or None when free.

    Read-only: creates nothing, and holds a shared lock only for the instant of the probe.
    """
    path = lock_path(database)
    if fcntl is None:  # pragma: no cover - Windows
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None  # no lock file: no run has ever held it here, or it cannot be read
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return describe_holder(_read_holder(path)) or "another process"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_holder(path: Path) -> dict[str, Any]:
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # being rewritten this instant, or not ours
    return found if isinstance(found, dict) else {}


def describe_holder(holder: dict[str, Any]) -> str | None:
    who = holder.get("holder")
    if not isinstance(who, str) or not who:
        return None
    activity = holder.get("activity")
    return f"{activity}, {who}" if isinstance(activity, str) and activity else who


@dataclass
class _SqliteWatch:
    driver: sqlite3.Connection
    changes_before: int
    dropped: bool = False
    denied: list[str] = field(default_factory=list)

    def might_orphan(self) -> bool:
        return self.dropped or self.driver.total_changes != self.changes_before


class SqliteDialect:
    name = "sqlite"
    transactional_ddl = True
    failed_statement_leaves_nothing = True  # every statement is atomic in SQLite

    def __init__(self, database: Path | None) -> None:
        self.database = database

    def run_lock(self, engine: Engine) -> FileRunLock | _NoLock:
        # An in-memory database lives in one process: nothing to exclude.
        return _NoLock() if self.database is None else FileRunLock(self.database)

    def prepare(self, conn: Connection) -> None:
        # Every transaction the runner opens, `with conn.begin()` included, takes the write
        # lock at BEGIN: a deferred BEGIN could fail half-way with "database is locked".
        from zos.database import SQLITE_BEGIN_IMMEDIATE

        conn.execution_options(**{SQLITE_BEGIN_IMMEDIATE: True})

    @contextlib.contextmanager
    def foreign_keys_suspended(self, conn: Connection) -> Iterator[None]:
        # The documented table rebuild drops a referenced table; with enforcement on that
        # deletes or refuses its children. The pragma is ignored inside a transaction, so it
        # is set around it, and broken_foreign_keys proves nothing was broken before commit.
        _pragma(conn, "foreign_keys = OFF")
        try:
            yield
        finally:
            driver = _usable_driver(conn)
            if driver is not None:
                with contextlib.suppress(sqlite3.Error):
                    driver.execute("PRAGMA foreign_keys = ON")

    @contextlib.contextmanager
    def watch(self, conn: Connection) -> Iterator[_SqliteWatch]:
        driver = _driver(conn)
        seen = _SqliteWatch(driver, driver.total_changes)

        def authorize(action: int, arg1: str | None, *_rest: object) -> int:
            # SQLite asks before preparing any statement: a COMMIT, ROLLBACK or BEGIN from the
            # migration, through SQLAlchemy, the DBAPI connection or SQL text, is refused
            # before it can end the transaction its version record must share.
            if action == sqlite3.SQLITE_TRANSACTION:
                seen.denied.append(str(arg1))
                return sqlite3.SQLITE_DENY
            if action in _DROPS:
                seen.dropped = True
            return sqlite3.SQLITE_OK

        driver.set_authorizer(authorize)
        try:
            yield seen
        finally:
            with contextlib.suppress(sqlite3.Error):
                driver.set_authorizer(None)

    def broken_foreign_keys(self, conn: Connection, watch: Any) -> str | None:
        if not watch.might_orphan():
            return None  # the check reads every row with a foreign key: skip it when it can
        broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
        if not broken:
            return None
        tables = sorted({f"{row[0]} -> {row[2]}" for row in broken})
        return (
            f"it would break foreign keys: {len(broken)} row(s) in {', '.join(tables)} "
            "point at rows that do not exist"
        )

    @contextlib.contextmanager
    def autocommit(self, conn: Connection) -> Iterator[None]:
        from zos.database import SQLITE_AUTOCOMMIT

        # pysqlite's own autocommit switch would undo zos.database's BEGIN handling.
        conn.execution_options(**{SQLITE_AUTOCOMMIT: True})
        try:
            with conn.begin():
                yield
        finally:
            conn.execution_options(**{SQLITE_AUTOCOMMIT: False})

    def transaction_identity(self, conn: Connection) -> object:
        # The authorizer already refuses every statement that could end the transaction.
        return None

    def left_transaction(
        self, engine: Engine, conn: Connection, identity: object, *, failed: bool
    ) -> str | None:
        driver = None if conn.invalidated else conn.connection.dbapi_connection
        try:
            if isinstance(driver, sqlite3.Connection) and driver.in_transaction:
                return None
        except sqlite3.ProgrammingError:
            pass  # closed by the migration: SQLite rolls back what a closed connection held
        else:
            if driver is not None:
                return MAYBE_COMMITTED
        return ROLLED_BACK

    def after_body(self, conn: Connection) -> None:
        return None  # a migration's PRAGMAs are its own business; the runner sets what it needs

    def run_holder(self, conn: Connection) -> str | None:
        return None if self.database is None else probe_run_lock(self.database)

    def rehearsal_mark(self, conn: Connection) -> None:
        return None

    def as_if_committed(self, conn: Connection, before: object) -> None:
        return None  # foreign keys are checked after each migration; nothing waits for a commit

    def cancel(self, engine: Engine, conn: Connection) -> None:
        driver = conn.connection.dbapi_connection
        if isinstance(driver, sqlite3.Connection):
            driver.interrupt()  # documented as safe to call from another thread

    def restore_session(self, conn: Connection) -> None:
        return None  # a migration cannot change where an SQLite connection's tables are

    def bounded_lock_waits(self, conn: Connection, seconds: float) -> contextlib.nullcontext[None]:
        # The runner's writes are bounded by busy_timeout already, and SQLite's lock is the
        # whole file: no table lock to queue the application behind.
        return contextlib.nullcontext()

    def bound_lock_waits_here(self, conn: Connection, seconds: float) -> None:
        return None

    def is_lock_timeout(self, error: BaseException) -> bool:
        return False

    def hold_table_locks(self, conn: Connection, statement: str) -> bool:
        return False  # the mark commits with the statement

    def release_table_locks(self, conn: Connection) -> None:
        return None

    def watch_lock_waits(
        self, engine: Engine, conn: Connection, seconds: float, on_blocked: Any
    ) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def durable(self, conn: Connection) -> Iterator[None]:
        """Commits without a sync each (``synchronous = NORMAL``), then the WAL and the
        database synced when the run ends, even when a reader keeps the checkpoint from
        copying anything (then SQLite itself would not sync the WAL)."""
        _pragma(conn, "synchronous = NORMAL")
        try:
            yield
        finally:
            driver = _usable_driver(conn)
            if driver is not None and not conn.in_transaction():
                with contextlib.suppress(sqlite3.Error):
                    driver.execute("PRAGMA wal_checkpoint(PASSIVE)")
                    driver.execute("PRAGMA synchronous = FULL")
            if self.database is not None:
                sync_files(self.database)


def sync_files(database: Path) -> None:
    """fsync the database file and its WAL, so what was committed survives a power cut."""
    real = database.resolve()
    for path in (real.with_name(real.name + "-wal"), real):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue  # no WAL: everything is in the database file already
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class _NoLock:
    def try_acquire(self) -> bool:
        return True

    def holder(self) -> str | None:
        return None

    def note(self, activity: str) -> None:
        return None

    def ensure_held(self) -> None:
        return None

    def release(self) -> None:
        return None


def _driver(conn: Connection) -> sqlite3.Connection:
    driver = conn.connection.dbapi_connection
    assert isinstance(driver, sqlite3.Connection)
    return driver


def _usable_driver(conn: Connection) -> sqlite3.Connection | None:
    """The driver's connection, or None when the migration closed or invalidated it."""
    if conn.invalidated or conn.closed:
        return None
    try:
        driver = conn.connection.dbapi_connection
        if isinstance(driver, sqlite3.Connection) and driver.in_transaction in (True, False):
            return driver
    except Exception:  # sqlite3.ProgrammingError when closed; SQLAlchemy's when invalidated
        return None
    return None


def _pragma(conn: Connection, pragma: str) -> None:
    # Straight to the driver: SQLAlchemy would wrap it in its own transaction handling.
    _driver(conn).execute(f"PRAGMA {pragma}")
