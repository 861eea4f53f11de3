"""Bounded lock waits on PostgreSQL and MariaDB/MySQL: the session settings that make a schema
change give up instead of queueing the application behind it, the error that says it gave up,
and a watcher that names the table and the session holding the lock while the change waits.

Sources: PostgreSQL "Client Connection Defaults" (``lock_timeout``: applies to every lock
acquisition, error 55P03 ``lock_not_available``; ``pg_blocking_pids()`` in "System Information
Functions"); MariaDB "Server System Variables" (``lock_wait_timeout``: metadata locks, in
seconds; ``innodb_lock_wait_timeout``: row locks, in seconds; both end a statement with error
1205 ``ER_LOCK_WAIT_TIMEOUT``).
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import exc, text

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

# How often the watcher looks at what the runner's connection waits for: five times per lock
# timeout, within these bounds (a long migration is watched the whole time it runs).
MIN_POLL_SECONDS = 0.1
MAX_POLL_SECONDS = 1.0
# PostgreSQL's error for a lock not granted within lock_timeout; MariaDB/MySQL's for both waits.
PG_LOCK_NOT_AVAILABLE = "55P03"
MYSQL_LOCK_WAIT_TIMEOUT = 1205
# What a waiting statement is about when no table can be read from it.
NO_TABLE = "a table"
# The table a statement is about, for MariaDB's processlist, which names no table.
_TABLE_OF_STATEMENT = re.compile(
    r"""\b(?:
        (?:ALTER|TRUNCATE|DROP|LOCK|RENAME|OPTIMIZE|ANALYZE)\s+(?:ONLINE\s+|IGNORE\s+)?TABLES?
            \s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?(?P<a>[`"\w.$]+)
        |INDEX\s+(?:IF\s+NOT\s+EXISTS\s+)?[`"\w$]+\s+ON\s+(?P<b>[`"\w.$]+)
        |(?:UPDATE|INSERT\s+(?:IGNORE\s+)?INTO|DELETE\s+FROM|REPLACE\s+INTO)\s+(?P<c>[`"\w.$]+)
        |FROM\s+(?P<d>[`"\w.$]+)
    )""",
    re.IGNORECASE | re.VERBOSE,
)


@dataclass(frozen=True)
class Blocked:
    """What a waiting schema change waits for: ``table`` ("widgets", or "a row" when the
    server does not say) and ``holder`` ("pid 4711, idle in transaction for 40 s").

    ``certain`` is False when the server does not list who holds the lock and ``holder`` is
    zos's best candidate: the words say "probably", so that no one ends an innocent session.
    """

    table: str
    holder: str
    certain: bool = True

    def __str__(self) -> str:
        held = "held by" if self.certain else "probably held by"
        return f"waiting for a lock on {self.table} ({held} {self.holder})"


class LockWaitWatch:
    """A thread that asks the server, on a connection of its own, what the runner's
    connection is waiting for; ``last`` is the newest answer (None: it has not waited)."""

    def __init__(
        self,
        engine: Engine,
        look: Callable[[Connection], Blocked | None],
        on_blocked: Callable[[Blocked], None],
        delay: float,
        poll: float = MIN_POLL_SECONDS,
    ) -> None:
        self.last: Blocked | None = None
        self._poll = poll
        self._engine = engine
        self._look = look
        self._on_blocked = on_blocked
        self._delay = delay
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="zos-lock-watch", daemon=True)

    def __enter__(self) -> LockWaitWatch:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        # Most migrations never wait: no connection is opened unless this one is still running.
        if self._stop.wait(self._delay):
            return
        try:
            with self._engine.connect() as conn:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                driver: Any = conn.connection.dbapi_connection
                if hasattr(driver, "prepare_threshold"):
                    driver.prepare_threshold = None
                told = False
                while not self._stop.is_set():
                    found = self._look(conn)
                    if found is not None:
                        self.last = found
                        if not told:
                            told = True
                            self._on_blocked(found)
                    self._stop.wait(self._poll)
        except exc.SQLAlchemyError:
            return  # a sign of life only: the migration's own error says what went wrong


def watch_delay(seconds: float) -> float:
    """How long the watcher stays idle first: a quarter of the wait, at most a quarter second."""
    return min(0.25, seconds / 4)


def poll_seconds(seconds: float) -> float:
    """How often the watcher asks, for lock waits bounded at ``seconds``."""
    return max(MIN_POLL_SECONDS, min(MAX_POLL_SECONDS, seconds / 5))


def lock_timeout_error(error: BaseException | None, code: str | int) -> bool:
    """Whether ``error`` or anything it was raised from is the driver's lock-timeout error."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        orig = getattr(error, "orig", None)
        for candidate in (error, orig):
            if candidate is None:
                continue
            if getattr(candidate, "sqlstate", None) == code:
                return True
            args = getattr(candidate, "args", ())
            if isinstance(code, int) and args and args[0] == code:
                return True
        error = error.__cause__ or error.__context__
    return False


# PostgreSQL ---------------------------------------------------------------------------------


@contextlib.contextmanager
def pg_bounded(conn: Connection, seconds: float) -> Iterator[None]:
    """``lock_timeout`` for the runner's session while the body runs, then the default again.

    Set for the session, not ``SET LOCAL``, so that it bounds a ``TRANSACTIONAL = False``
    migration too; the runner's connection serves nobody else meanwhile.
    """
    milliseconds = max(1, math.ceil(seconds * 1000))
    conn.exec_driver_sql(f"SET lock_timeout = {milliseconds}")
    conn.commit()
    try:
        yield
    finally:
        with contextlib.suppress(exc.SQLAlchemyError):
            if not conn.invalidated and not conn.closed:
                if conn.in_transaction():
                    conn.rollback()
                conn.exec_driver_sql("RESET lock_timeout")
                conn.commit()


# The table of the lock waited for; for a row (a wait on the holder's transaction id) the
# table of the tuple lock the waiter took first, else of the statement it runs.
_PG_BLOCKED = text(
    "SELECT CAST(CAST(COALESCE(l.relation, tuple.relation) AS regclass) AS text), w.query,"
    " b.pid, b.state, EXTRACT(EPOCH FROM now() - b.state_change), b.application_name"
    " FROM pg_locks l"
    " JOIN pg_stat_activity w ON w.pid = l.pid"
    " LEFT JOIN LATERAL (SELECT t.relation FROM pg_locks t WHERE t.pid = l.pid"
    " AND t.locktype = 'tuple' AND t.relation IS NOT NULL LIMIT 1) tuple ON true"
    " CROSS JOIN LATERAL unnest(pg_blocking_pids(l.pid)) AS blocker(pid)"
    " JOIN pg_stat_activity b ON b.pid = blocker.pid"
    " WHERE l.pid = :me AND NOT l.granted"
    " ORDER BY b.state_change LIMIT 1"
)


def pg_looker(conn: Connection) -> Callable[[Connection], Blocked | None]:
    """What the server says the runner's connection ``conn`` waits for, asked from another."""
    driver: Any = conn.connection.dbapi_connection
    me = int(driver.info.backend_pid)

    def look(probe: Connection) -> Blocked | None:
        row = probe.execute(_PG_BLOCKED, {"me": me}).first()
        if row is None:
            return None
        table, statement, pid, state, seconds, application = row
        if not table:
            named = statement_table(str(statement or ""))
            table = "a row" if named == NO_TABLE else named
        return Blocked(table, _session(f"pid {pid}", state, seconds, application))

    return look


def _session(who: str, state: str | None, seconds: Any, application: str | None) -> str:
    doing = state or "connected"
    held = f"{who}, {doing} for {float(seconds or 0):.0f} s"
    if application:
        held += f", application {application[:40]!r}"
    return held


# MariaDB/MySQL ------------------------------------------------------------------------------


@contextlib.contextmanager
def mysql_bounded(conn: Connection, seconds: float) -> Iterator[None]:
    """``lock_wait_timeout`` (metadata locks, which DDL takes) and ``innodb_lock_wait_timeout``
    (row locks) for the runner's session while the body runs, then their old values again.
    Both count whole seconds; a fraction is rounded up."""
    whole = max(1, math.ceil(seconds))
    before = conn.execute(
        text("SELECT @@SESSION.lock_wait_timeout, @@SESSION.innodb_lock_wait_timeout")
    ).one()
    conn.exec_driver_sql(
        f"SET SESSION lock_wait_timeout = {whole}, innodb_lock_wait_timeout = {whole}"
    )
    conn.commit()
    try:
        yield
    finally:
        with contextlib.suppress(exc.SQLAlchemyError):
            if not conn.invalidated and not conn.closed:
                if conn.in_transaction():
                    conn.rollback()
                conn.exec_driver_sql(
                    f"SET SESSION lock_wait_timeout = {int(before[0])},"
                    f" innodb_lock_wait_timeout = {int(before[1])}"
                )
                conn.commit()


_MYSQL_ME = text("SELECT STATE, INFO, DB FROM information_schema.PROCESSLIST WHERE ID = :me")
_MYSQL_ROW_BLOCKER = text(
    "SELECT b.trx_mysql_thread_id FROM information_schema.INNODB_LOCK_WAITS w"
    " JOIN information_schema.INNODB_TRX r ON r.trx_id = w.requesting_trx_id"
    " JOIN information_schema.INNODB_TRX b ON b.trx_id = w.blocking_trx_id"
    " WHERE r.trx_mysql_thread_id = :me LIMIT 1"
)
# The sessions holding a metadata lock on the table, listed by the metadata_lock_info plugin
# (MariaDB "METADATA_LOCK_INFO": granted locks only; the waiter's own request is not there).
_MYSQL_MDL_HOLDERS = text(
    "SELECT DISTINCT m.THREAD_ID FROM information_schema.METADATA_LOCK_INFO m"
    " WHERE m.TABLE_SCHEMA = :db AND m.TABLE_NAME = :table"
    " AND m.THREAD_ID NOT IN (:me, CONNECTION_ID()) ORDER BY m.THREAD_ID"
)
# Without the plugin the server does not say who holds a metadata lock. The candidates are the
# open transactions of sessions in the run's database (a transaction keeps the metadata lock of
# every table it touched until it ends), those using or locking tables first, then the oldest.
_MYSQL_CANDIDATES = text(
    "SELECT t.trx_mysql_thread_id FROM information_schema.INNODB_TRX t"
    " JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id"
    " WHERE t.trx_mysql_thread_id NOT IN (:me, CONNECTION_ID()) AND p.DB = :db"
    " ORDER BY (t.trx_tables_in_use + t.trx_tables_locked > 0) DESC, t.trx_started,"
    " t.trx_mysql_thread_id LIMIT 4"
)
_MYSQL_SESSION = text(
    "SELECT COMMAND, TIME, HOST FROM information_schema.PROCESSLIST WHERE ID = :id"
)
# MariaDB's error for an information_schema table that does not exist (the plugin is absent).
_MYSQL_UNKNOWN_TABLE = 1109


def mysql_looker(conn: Connection) -> Callable[[Connection], Blocked | None]:
    """What the runner's connection ``conn`` waits for, read from the processlist and InnoDB's
    transaction tables by another connection.

    A row lock's holder is certain (InnoDB lists lock waits), and so is a metadata lock's when
    the ``metadata_lock_info`` plugin is installed. Otherwise the holder is a candidate, said
    to be "probably" the one, chosen among the sessions in the run's database only.
    """
    driver: Any = conn.connection.dbapi_connection
    me = int(driver.thread_id())
    plugin: list[bool] = []  # asked once: whether METADATA_LOCK_INFO answers

    def look(probe: Connection) -> Blocked | None:
        row = probe.execute(_MYSQL_ME, {"me": me}).first()
        if row is None:
            return None
        state, statement, database = str(row[0] or ""), str(row[1] or ""), row[2]
        table = statement_table(statement)
        if "lock" not in state.lower():
            holder_id = _scalar(probe, _MYSQL_ROW_BLOCKER, me)  # a row lock, if any
            if holder_id is None:
                return None
            return Blocked(table, _mysql_holder(probe, holder_id))
        schema, _, name = table.rpartition(".")
        schema = schema or (str(database) if database else "")
        if table != NO_TABLE and schema:
            holders = _mdl_holders(probe, plugin, me, schema, name)
            if holders:
                return Blocked(table, _mysql_holders(probe, holders))
        candidates = _ids(probe, _MYSQL_CANDIDATES, {"me": me, "db": database})
        if not candidates:
            return Blocked(table, "another session", certain=False)
        return Blocked(table, _mysql_holders(probe, candidates, certain=False), certain=False)

    return look


def _mdl_holders(
    probe: Connection, plugin: list[bool], me: int, schema: str, table: str
) -> list[int]:
    """The sessions the metadata_lock_info plugin lists as holding a lock on the table; none
    when the plugin is not installed (remembered in ``plugin`` after the first question)."""
    if plugin and not plugin[0]:
        return []
    try:
        holders = _ids(
            probe, _MYSQL_MDL_HOLDERS, {"me": me, "db": schema, "table": table}, strict=True
        )
    except exc.DBAPIError as error:
        if getattr(error.orig, "args", (None,))[0] != _MYSQL_UNKNOWN_TABLE:
            raise
        plugin[:] = [False]
        return []
    plugin[:] = [True]
    return holders


def _ids(
    probe: Connection, query: Any, params: dict[str, Any], *, strict: bool = False
) -> list[int]:
    try:
        return [int(value) for value in probe.execute(query, params).scalars()]
    except exc.DBAPIError:
        if strict:
            raise
        return []  # a server without InnoDB's information_schema tables


def _scalar(probe: Connection, query: Any, me: int) -> int | None:
    found = _ids(probe, query, {"me": me})
    return found[0] if found else None


def _mysql_holders(probe: Connection, ids: list[int], *, certain: bool = True) -> str:
    """The first session in words, then the others by id: "connection 12 from …, idle in
    transaction for 7 s, and connection 15" (all hold the lock) or "…, or connection 15"."""
    first = _mysql_holder(probe, ids[0])
    others = [f"connection {other}" for other in ids[1:]]
    if not others:
        return first
    joined = ", ".join(others)
    return f"{first}, and {joined}" if certain else f"{first}, or {joined}"


def _mysql_holder(probe: Connection, holder_id: int | None) -> str:
    if holder_id is None:
        return "another session"
    row = probe.execute(_MYSQL_SESSION, {"id": holder_id}).first()
    if row is None:
        return f"connection {holder_id}"
    command, seconds, host = row
    doing = "idle in transaction" if command == "Sleep" else f"running ({command})"
    where = f" from {host}" if host else ""
    return f"connection {holder_id}{where}, {doing} for {int(seconds or 0)} s"


def statement_table(statement: str) -> str:
    """The table a SQL statement names first ("widgets"), or ``NO_TABLE`` when none is found."""
    match = _TABLE_OF_STATEMENT.search(statement)
    if match is None:
        return NO_TABLE
    name = next(group for group in match.groups() if group)
    return name.replace("`", "").replace('"', "")
