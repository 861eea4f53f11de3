"""PostgreSQL and MariaDB/MySQL: run locks held on a connection of their own, and what both
servers share (no foreign-key suspension, autocommit through the isolation level).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import exc, text

from zos.database import open_connection
from zos.errors import ConfigError, LockTimeout
from zos.migrator.dialects import lockwaits, tablelocks
from zos.migrator.dialects.base import LOCK_NAME, MAYBE_COMMITTED, ROLLED_BACK, this_process
from zos.migrator.dialects.direct import PG_HOLDER_SQL, PG_LOCK_KEY, describe_pg_holder
from zos.migrator.dialects.lockwaits import Blocked, LockWaitWatch
from zos.migrator.dialects.poolers import refuse_pooler

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

LOCK_LOST = (
    "the run lock's session ended during the run (the server or an operator closed it), so "
    "another runner may have started; what was being applied was not recorded and the "
    "migrations before it are; check 'zos db status', then run 'zos db migrate' again"
)


# What the session keeps from one transaction to the next besides roles and settings, in the
# steps DISCARD ALL's documentation lists, all of which run inside a transaction (DISCARD ALL
# itself does not): cursors, prepared statements, LISTEN, session advisory locks, cached plans,
# temporary tables, sequence state.
_SESSION_LEFTOVERS = (
    "CLOSE ALL; DEALLOCATE ALL; UNLISTEN *; SELECT pg_advisory_unlock_all(); DISCARD PLANS; "
    "DISCARD TEMP; DISCARD SEQUENCES"
)
# Every enum value. One a migration adds with ALTER TYPE … ADD VALUE (however it is sent: a
# function, a DO block, a statement built at run time) "cannot be used until the transaction
# has been committed", even when its type is new too; those CREATE TYPE made can.
_ENUM_VALUES = text("SELECT oid FROM pg_catalog.pg_enum")
_NEW_ENUM_VALUES = text(
    "SELECT oid, format_type(enumtypid, NULL), quote_literal(enumlabel) FROM pg_catalog.pg_enum"
    " WHERE NOT oid = ANY(CAST(:seen AS oid[])) ORDER BY enumtypid, enumsortorder"
)
# The server's own check of whether a value may be used yet: enum_in, which a cast calls.
_USE_ENUM_VALUE = text(
    "SELECT enum_in(CAST(enumlabel AS cstring), enumtypid) FROM pg_catalog.pg_enum"
    " WHERE oid = CAST(:value AS oid)"
)
_UNSAFE_NEW_ENUM_VALUE_USAGE = "55P04"

# Every constraint that starts each transaction deferred ("SET CONSTRAINTS": the two
# deferrable classes "start every transaction in the indicated mode"), as schema.name; other
# sessions' temporary schemas and the server's own are left out.
_INITIALLY_DEFERRED = text(
    "SELECT DISTINCT quote_ident(n.nspname) || '.' || quote_ident(c.conname)"
    " FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace"
    " WHERE c.condeferred"
    " AND (n.oid = pg_my_temp_schema() OR n.nspname NOT LIKE 'pg\\_%')"
    " AND n.nspname <> 'information_schema'"
)


class _Watch:
    def might_orphan(self) -> bool:
        return False  # the servers enforce foreign keys on every statement


class ServerDialect:
    """What PostgreSQL and MariaDB/MySQL do alike."""

    name = "server"
    transactional_ddl = True
    failed_statement_leaves_nothing = False

    @contextlib.contextmanager
    def foreign_keys_suspended(self, conn: Connection) -> Iterator[None]:
        yield  # enforced per statement, and deferrable where a migration needs it

    @contextlib.contextmanager
    def watch(self, conn: Connection) -> Iterator[_Watch]:
        yield _Watch()

    def broken_foreign_keys(self, conn: Connection, watch: Any) -> str | None:
        return None

    def rehearsal_mark(self, conn: Connection) -> object:
        return None

    def as_if_committed(self, conn: Connection, before: object) -> str | None:
        return None  # MariaDB/MySQL defer nothing to the commit; nothing is rehearsed there

    @contextlib.contextmanager
    def autocommit(self, conn: Connection) -> Iterator[None]:
        default = conn.default_isolation_level
        conn.execution_options(isolation_level="AUTOCOMMIT")
        try:
            with conn.begin():
                yield
        finally:
            conn.execution_options(isolation_level=default or "READ COMMITTED")

    def hold_table_locks(self, conn: Connection, statement: str) -> bool:
        return False  # the mark commits with the statement, or after CONCURRENTLY has begun

    def release_table_locks(self, conn: Connection) -> None:
        return None

    @contextlib.contextmanager
    def durable(self, conn: Connection) -> Iterator[None]:
        yield  # a server syncs every commit itself

    def _looker(self, conn: Connection) -> Callable[[Connection], Blocked | None]:
        raise NotImplementedError

    @contextlib.contextmanager
    def watch_lock_waits(
        self,
        engine: Engine,
        conn: Connection,
        seconds: float,
        on_blocked: Callable[[Blocked], None],
    ) -> Iterator[LockWaitWatch | None]:
        delay, poll = lockwaits.watch_delay(seconds), lockwaits.poll_seconds(seconds)
        with LockWaitWatch(engine, self._looker(conn), on_blocked, delay, poll) as watch:
            yield watch


class PostgresDialect(ServerDialect):
    name = "postgresql"
    transactional_ddl = True
    failed_statement_leaves_nothing = False  # CREATE INDEX CONCURRENTLY, outside a transaction

    def run_lock(self, engine: Engine) -> PostgresRunLock:
        return PostgresRunLock(engine)

    _search_path: str | None = None  # as the run's first connection began
    _lock_bound: float | None = None  # seconds, the bound of the migration running now
    _schema: str | None = None

    def prepare(self, conn: Connection) -> None:
        driver: Any = conn.connection.dbapi_connection
        # Server-side prepared statements do not survive a transaction pooler (PgBouncer
        # hands each transaction another server connection), and the runner needs none.
        driver.prepare_threshold = None
        if self._search_path is None:
            self._search_path = str(conn.exec_driver_sql("SHOW search_path").scalar())
            self._schema = conn.exec_driver_sql("SELECT current_schema()").scalar()
            conn.rollback()
        qualify(conn, self._schema)

    def restore_session(self, conn: Connection) -> None:
        # What DISCARD ALL does, in the steps its documentation lists (DISCARD ALL itself
        # refuses to run in the transaction the driver opens): temporary tables, prepared
        # statements, cursors, LISTEN and advisory locks a migration left (the run lock is on
        # a connection of its own), besides roles and settings. No parameters: one round trip.
        if conn.in_transaction():
            conn.rollback()
        conn.exec_driver_sql(f"SET SESSION AUTHORIZATION DEFAULT; RESET ALL; {_SESSION_LEFTOVERS}")
        if self._search_path is not None:
            conn.execute(
                text("SELECT set_config('search_path', :p, false)"), {"p": self._search_path}
            )
        conn.commit()

    def transaction_identity(self, conn: Connection) -> object:
        # The savepoint exists only in this transaction: after a failure, rolling back to it
        # proves the transaction is still the one the runner began.
        conn.exec_driver_sql("SAVEPOINT zos_guard")
        return conn.exec_driver_sql("SELECT txid_current()").scalar()

    def left_transaction(
        self, engine: Engine, conn: Connection, identity: object, *, failed: bool
    ) -> str | None:
        try:
            if failed:
                conn.exec_driver_sql("ROLLBACK TO SAVEPOINT zos_guard")
            if conn.exec_driver_sql("SELECT txid_current()").scalar() == identity:
                return None
        except exc.SQLAlchemyError:
            pass  # no such savepoint, or the connection is gone: the transaction ended
        # The server remembers how each transaction ended; ask on a connection of its own.
        with engine.connect() as other:
            status = other.execute(
                text("SELECT txid_status(CAST(:x AS bigint))"), {"x": identity}
            ).scalar()
        return MAYBE_COMMITTED if status == "committed" else ROLLED_BACK

    def after_body(self, conn: Connection) -> None:
        # Inside the migration's transaction: a SET is rolled back with it, and the RESETs go
        # back to the values the session started with (server, role, URL options), the role
        # and session user included, which RESET ALL leaves; then the runner's search path.
        conn.exec_driver_sql("RESET SESSION AUTHORIZATION")
        conn.exec_driver_sql("RESET ROLE")
        conn.exec_driver_sql("RESET ALL")
        if self._search_path is not None:
            conn.execute(
                text("SELECT set_config('search_path', :p, false)"), {"p": self._search_path}
            )
        if self._lock_bound is not None:
            # The record and the commit's deferred checks still wait a bounded time.
            self.bound_lock_waits_here(conn, self._lock_bound)

    def run_holder(self, conn: Connection) -> str | None:
        return pg_run_holder(conn)

    def rehearsal_mark(self, conn: Connection) -> _EnumValues:
        return _EnumValues(frozenset(conn.execute(_ENUM_VALUES).scalars()))

    def as_if_committed(self, conn: Connection, before: object) -> str | None:
        # What the commit checks: switching every deferred constraint to IMMEDIATE checks, at
        # once, what was left for the end of the transaction, and fails as the commit would.
        conn.exec_driver_sql("SET CONSTRAINTS ALL IMMEDIATE")
        # What the real run's next migration would not find in its session (restore_session;
        # after_body has reset roles and settings already): a migration that makes the same
        # temporary table or prepared statement as the one before works, and one that uses
        # the one before's fails, as in the real run.
        conn.exec_driver_sql(_SESSION_LEFTOVERS)
        # Then the modes a new transaction starts with: the INITIALLY DEFERRED ones deferred
        # again, the others immediate (the next migration's own SET CONSTRAINTS is its own).
        names = [str(name) for name in conn.execute(_INITIALLY_DEFERRED).scalars()]
        if names:
            conn.exec_driver_sql(
                f"SET CONSTRAINTS {', '.join(names)} DEFERRED",
                execution_options={"no_parameters": True},
            )
        if isinstance(before, _EnumValues):
            added = _enum_values_added(conn, before)
            if added:
                return (
                    f"it adds {added}, which PostgreSQL lets later statements use only once it "
                    "is committed"
                )
        return None

    def bounded_lock_waits(
        self, conn: Connection, seconds: float
    ) -> contextlib.AbstractContextManager[None]:
        self._lock_bound = seconds  # after_body's RESET ALL clears it; set again there
        return lockwaits.pg_bounded(conn, seconds)

    def bound_lock_waits_here(self, conn: Connection, seconds: float) -> None:
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = {max(1, math.ceil(seconds * 1000))}")

    def is_lock_timeout(self, error: BaseException) -> bool:
        return lockwaits.lock_timeout_error(error, lockwaits.PG_LOCK_NOT_AVAILABLE)

    def _looker(self, conn: Connection) -> Callable[[Connection], Blocked | None]:
        return lockwaits.pg_looker(conn)

    def cancel(self, engine: Engine, conn: Connection) -> None:
        driver: Any = conn.connection.dbapi_connection
        driver.cancel()  # psycopg sends a cancel request on a connection of its own


@dataclass(frozen=True)
class _EnumValues:
    """The enum values a PostgreSQL transaction had at one moment."""

    oids: frozenset[int]


def _enum_values_added(conn: Connection, before: _EnumValues) -> str | None:
    """The values added since ``before`` that later statements of this transaction may not use
    yet, as "the enum value 'happy' to mood", or None. Each is tried in a savepoint of its own."""
    unusable: list[str] = []
    for oid, kind, label in conn.execute(_NEW_ENUM_VALUES, {"seen": sorted(before.oids)}).all():
        conn.exec_driver_sql("SAVEPOINT zos_enum_value")
        try:
            conn.execute(_USE_ENUM_VALUE, {"value": oid})
        except exc.DBAPIError as error:
            if not lockwaits.lock_timeout_error(error, _UNSAFE_NEW_ENUM_VALUE_USAGE):
                raise
            conn.exec_driver_sql("ROLLBACK TO SAVEPOINT zos_enum_value")
            unusable.append(f"{label} to {kind}")
        conn.exec_driver_sql("RELEASE SAVEPOINT zos_enum_value")
    if not unusable:
        return None
    return f"the enum value{'s' if len(unusable) > 1 else ''} {', '.join(unusable)}"


class PostgresRunLock:
    """A session-level advisory lock on a connection of its own, kept out of any transaction.

    Outside a transaction so that it holds back nothing: an open transaction would pin the
    vacuum horizon for the whole run and make ``CREATE INDEX CONCURRENTLY`` wait for it
    forever. The server releases the lock when the connection ends. The holder's name rides in
    ``application_name`` for ``status`` and waiters to read.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._conn: Connection | None = None

    def _connection(self) -> Connection:
        if self._conn is None:
            conn = open_connection(self.engine).execution_options(isolation_level="AUTOCOMMIT")
            PostgresDialect().prepare(conn)
            try:
                refuse_pooler(conn, self.engine.url.render_as_string(hide_password=True))
            except ConfigError:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def try_acquire(self) -> bool:
        conn = self._connection()
        got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": PG_LOCK_KEY}).scalar()
        if got:
            self.note("")
        return bool(got)

    def holder(self) -> str | None:
        return pg_run_holder(self._connection())

    def note(self, activity: str) -> None:
        name = f"zos: {activity}, {this_process()}" if activity else f"zos: {this_process()}"
        conn = self._connection()
        conn.execute(text("SELECT set_config('application_name', :n, false)"), {"n": name[:63]})

    def ensure_held(self) -> None:
        try:
            self._connection().execute(text("SELECT 1"))
        except exc.SQLAlchemyError as error:
            raise LockTimeout(LOCK_LOST) from error

    def release(self) -> None:
        if self._conn is None:
            return
        conn, self._conn = self._conn, None
        with contextlib.suppress(exc.SQLAlchemyError):
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": PG_LOCK_KEY})
        with contextlib.suppress(exc.SQLAlchemyError):
            conn.close()


def qualify(conn: Connection, schema: str | None) -> None:
    """Make every statement on zos's tables through ``conn`` name ``schema`` (the one the run
    began in), so a migration that changes the search path or the current database cannot
    move where the runner records it. ``database.schema``, when set, is already in force."""
    options = conn.get_execution_options()
    if schema is not None and not options.get("schema_translate_map"):
        conn.execution_options(schema_translate_map={None: schema})


def pg_run_holder(conn: Connection) -> str | None:
    """Who holds the run lock of the database ``conn`` is on, or None; read-only."""
    # The driver's own parameter style: the query is shared with the psycopg-only read path.
    row = conn.exec_driver_sql(PG_HOLDER_SQL, {"k": PG_LOCK_KEY}).first()
    return None if row is None else describe_pg_holder(row)


class MySQLDialect(ServerDialect):
    name = "mysql"
    # Every DDL statement commits at once: a migration is marked started before it runs.
    transactional_ddl = False
    # DDL is atomic per statement (MariaDB 10.6 "Atomic DDL", MySQL 8.0 "Atomic Data Definition
    # Statement Support"): a statement that fails leaves no half-made table behind.
    failed_statement_leaves_nothing = True

    def run_lock(self, engine: Engine) -> MySQLRunLock:
        return MySQLRunLock(engine)

    _database: str | None = None  # as the run's first connection began

    def prepare(self, conn: Connection) -> None:
        if self._database is None:
            current = conn.exec_driver_sql("SELECT DATABASE()").scalar()
            conn.rollback()
            self._database = None if current is None else str(current)
        qualify(conn, self._database)

    def restore_session(self, conn: Connection) -> None:
        # A new session: MariaDB/MySQL cannot reset one in SQL (user variables, session
        # variables, temporary tables, GET_LOCK locks a migration took, SET NAMES), and the
        # driver's and the engine's connect-time set-up run again as for the first. The run
        # lock is on a connection of its own.
        if conn.in_transaction():
            conn.rollback()
        conn.invalidate()
        conn.connection  # noqa: B018 - opens the new session now, not in the migration
        if self._database is not None:
            quoted = self._database.replace("`", "``")
            conn.exec_driver_sql(f"USE `{quoted}`")
            conn.commit()

    def transaction_identity(self, conn: Connection) -> object:
        # A savepoint lives only as long as its transaction: if it is gone afterwards, the
        # body committed (a DDL statement or a COMMIT through a door Python cannot shut).
        conn.exec_driver_sql("SAVEPOINT zos_guard")
        return "zos_guard"

    def left_transaction(
        self, engine: Engine, conn: Connection, identity: object, *, failed: bool
    ) -> str | None:
        driver: Any = conn.connection.dbapi_connection
        if driver is None or not driver.open:
            return ROLLED_BACK  # closed: the server rolled back what it held
        if identity is None:
            return None
        verb = "ROLLBACK TO SAVEPOINT" if failed else "RELEASE SAVEPOINT"
        try:
            conn.exec_driver_sql(f"{verb} zos_guard")
        except exc.DBAPIError:
            return MAYBE_COMMITTED
        return None

    def after_body(self, conn: Connection) -> None:
        if self._database is not None:
            # Within the transaction: USE commits nothing, and the record must find its table.
            conn.exec_driver_sql(f"USE `{self._database.replace('`', '``')}`")

    def run_holder(self, conn: Connection) -> str | None:
        return mysql_run_holder(conn)

    def bounded_lock_waits(
        self, conn: Connection, seconds: float
    ) -> contextlib.AbstractContextManager[None]:
        return lockwaits.mysql_bounded(conn, seconds)

    def bound_lock_waits_here(self, conn: Connection, seconds: float) -> None:
        return None  # no transaction-local variables; nothing is rehearsed here anyway

    def is_lock_timeout(self, error: BaseException) -> bool:
        return lockwaits.lock_timeout_error(error, lockwaits.MYSQL_LOCK_WAIT_TIMEOUT)

    def hold_table_locks(self, conn: Connection, statement: str) -> bool:
        tables = tablelocks.tables_to_lock(statement)
        if tables is not None:
            return tablelocks.lock_tables(conn, tables, (self._database, "_schema_version"))
        views = tablelocks.views_to_wait_for(statement)
        if views is not None:
            tablelocks.wait_for_views(conn, views)
        return False

    def release_table_locks(self, conn: Connection) -> None:
        tablelocks.unlock_tables(conn)

    def _looker(self, conn: Connection) -> Callable[[Connection], Blocked | None]:
        return lockwaits.mysql_looker(conn)

    def cancel(self, engine: Engine, conn: Connection) -> None:
        driver: Any = conn.connection.dbapi_connection
        with engine.connect() as killer:
            killer.exec_driver_sql(f"KILL QUERY {int(driver.thread_id())}")


# Where a MariaDB/MySQL run lock's holder writes who it is and what it is doing.
MYSQL_HOLDER_TABLE = "_schema_lock"


def mysql_lock_name(conn: Connection) -> str:
    # GET_LOCK names are server-wide, so the database's name is part of the lock's name.
    database = conn.execute(text("SELECT DATABASE()")).scalar() or ""
    return f"{LOCK_NAME}:{hashlib.sha256(str(database).encode()).hexdigest()[:32]}"


class MySQLRunLock:
    """``GET_LOCK`` on a connection of its own; the server drops it when that connection ends."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._conn: Connection | None = None
        self._name = ""
        self._noted = False

    def _connection(self) -> Connection:
        if self._conn is None:
            self._conn = open_connection(self.engine)
            self._name = mysql_lock_name(self._conn)
            self._conn.commit()
        return self._conn

    def try_acquire(self) -> bool:
        conn = self._connection()
        got = conn.execute(text("SELECT GET_LOCK(:n, 0)"), {"n": self._name}).scalar()
        conn.commit()
        if got == 1:
            self.note("")
        return got == 1

    def holder(self) -> str | None:
        found = mysql_run_holder(self._connection())
        self._connection().commit()
        return found

    def note(self, activity: str) -> None:
        # MariaDB/MySQL have no application_name: the holder's words go in a row of their own,
        # which status reads only while the lock says a run is on.
        holder = f"{activity}, {this_process()}" if activity else this_process()
        conn = self._connection()
        if not self._noted:
            conn.exec_driver_sql(
                f"CREATE TABLE IF NOT EXISTS {MYSQL_HOLDER_TABLE}"
                " (name VARCHAR(32) PRIMARY KEY, holder VARCHAR(255) NOT NULL)"
            )
            self._noted = True
        conn.execute(
            text(f"REPLACE INTO {MYSQL_HOLDER_TABLE} (name, holder) VALUES ('run', :h)"),
            {"h": holder[:255]},
        )
        conn.commit()

    def ensure_held(self) -> None:
        conn = self._connection()
        try:
            mine = conn.execute(
                text("SELECT IS_USED_LOCK(:n) = CONNECTION_ID()"), {"n": self._name}
            )
            held = mine.scalar()
            conn.commit()
        except exc.DBAPIError as error:
            held = None
            cause: BaseException | None = error
        else:
            cause = None
        if held != 1:
            raise LockTimeout(
                "the run lock's connection was lost during the run, so another runner may "
                "have started; the migrations applied so far are recorded"
            ) from cause

    def release(self) -> None:
        if self._conn is None:
            return
        conn, self._conn = self._conn, None
        with contextlib.suppress(exc.SQLAlchemyError):
            conn.rollback()
            if self._noted:
                # Gone with the run: no table of zos's outlives it (a killed run's is replaced).
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {MYSQL_HOLDER_TABLE}")
            conn.execute(text("SELECT RELEASE_LOCK(:n)"), {"n": self._name})
            conn.commit()
        with contextlib.suppress(exc.SQLAlchemyError):
            conn.close()


def mysql_run_holder(conn: Connection) -> str | None:
    """Who holds the run lock of the database ``conn`` is on, or None; read-only."""
    name = mysql_lock_name(conn)
    who = conn.execute(text("SELECT IS_USED_LOCK(:n)"), {"n": name}).scalar()
    if who is None:
        return None
    host = conn.execute(
        text("SELECT HOST FROM information_schema.PROCESSLIST WHERE ID = :id"), {"id": who}
    ).scalar()
    connection = f"connection {who}" + (f" from {host}" if host else "")
    try:
        holder = conn.execute(
            text(f"SELECT holder FROM {MYSQL_HOLDER_TABLE} WHERE name = 'run'")
        ).scalar()
    except exc.DBAPIError:
        return connection  # the holder has not written its words yet
    return f"{holder}, {connection}" if holder else connection
