"""PostgreSQL's version tables read with psycopg alone: the read path of ``status``, ``history``,
the start-up guard and a ``migrate`` with nothing to do, without importing SQLAlchemy.

SQLAlchemy's import is most of the cost of those commands on a server, as on SQLite (see
``zos.migrator.reader``). Used only where it reads exactly what the SQLAlchemy path would: a
``postgresql+psycopg`` URL with no query options (those reach the driver through SQLAlchemy's
conversions, which this path does not repeat). Anything else goes through SQLAlchemy.

MariaDB/MySQL keep the SQLAlchemy path for now: their run-holder probe
(``servers.mysql_run_holder``) is being reworked, and a second copy of it would drift.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
from typing import TYPE_CHECKING, Any

from zos.errors import ConfigError, DatabaseUnavailable
from zos.migrator.dialects.base import LOCK_NAME
from zos.migrator.records import AppliedMigration, applied_from_row
from zos.urls import DatabaseUrl, mask_url

if TYPE_CHECKING:
    from zos.config import Settings

# Advisory lock keys are scoped to the current database, so one fixed key suffices (the run
# lock of servers.PostgresRunLock, which asks who holds it with the same query).
PG_LOCK_KEY = int.from_bytes(hashlib.sha256(LOCK_NAME.encode()).digest()[:8], "big", signed=True)
PG_HOLDER_SQL = (
    "SELECT a.pid, a.application_name, host(a.client_addr) FROM pg_locks l"
    " JOIN pg_stat_activity a ON a.pid = l.pid"
    " WHERE l.locktype = 'advisory' AND l.granted"
    " AND l.objid = (CAST(%(k)s AS bigint) & 4294967295)"
    " AND l.classid = ((CAST(%(k)s AS bigint) >> 32) & 4294967295)"
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)
_TABLES = (
    "SELECT c.relname FROM pg_catalog.pg_class c"
    " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p')"
    " AND c.relname IN ('_schema_version', '_schema_backfill')"
)

# A schema further down the session's search path than ``home`` that holds a _schema_version,
# when the path is a default the connection did not choose itself (the server's, the role's or
# the database's, which a migration may have changed with ALTER DATABASE/ROLE … SET), so that
# a history is never taken for none. A path from the URL ("client") or set by zos for
# database.schema ("session") is the operator's choice of where the history lives.
PG_HISTORY_ELSEWHERE_SQL = (
    "SELECT s.name FROM unnest(current_schemas(false)) WITH ORDINALITY AS s(name, place)"
    " JOIN pg_catalog.pg_namespace n ON n.nspname = s.name"
    " JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid"
    " WHERE c.relname = '_schema_version' AND c.relkind IN ('r', 'p')"
    " AND s.name <> %(home)s"
    " AND (SELECT source FROM pg_catalog.pg_settings WHERE name = 'search_path')"
    " NOT IN ('client', 'session')"
    " ORDER BY s.place LIMIT 1"
)


class Recorded:
    """What the version tables hold: applied rows, resumable backfills, the run lock's holder."""

    def __init__(
        self, applied: list[AppliedMigration], resumable: frozenset[int], running: str | None
    ) -> None:
        self.applied, self.resumable, self.running = applied, resumable, running


def direct_read_possible(url: DatabaseUrl) -> bool:
    """Whether ``url``'s version tables can be read here, exactly as SQLAlchemy would read them."""
    return (
        url.backend == "postgresql"
        and url.driver == "psycopg"
        and not url.query
        and importlib.util.find_spec("psycopg") is not None
    )


def read_postgresql(url: DatabaseUrl, settings: Settings) -> Recorded:
    """Rows of ``_schema_version``, versions in ``_schema_backfill`` and who holds the run lock.

    The tables are looked for in ``database.schema``, else in the session's current schema (the
    one unqualified names create tables in), never further down the search path.

    Raises:
        ConfigError: the current schema has no history while another on the default search
            path has one (``PG_HISTORY_ELSEWHERE_SQL``): ``database.schema`` must say which.
        DatabaseUnavailable: the server cannot be reached, refuses the login, or fails a query.
    """
    import psycopg

    timeout = max(2, math.ceil(settings.database.connect_timeout_seconds))
    try:
        # No server-side prepared statements: a transaction pooler (PgBouncer) would lose them.
        conn = psycopg.connect(
            host=url.host,
            port=url.port,
            user=url.username,
            password=url.password,
            dbname=url.database,
            connect_timeout=timeout,
            prepare_threshold=None,
        )
    except psycopg.Error as error:
        raise DatabaseUnavailable(
            f"cannot connect to {url.display}: {_first_line(error)}"
        ) from error
    try:
        return _read(conn, settings.database.schema)
    except psycopg.Error as error:
        raise DatabaseUnavailable(
            f"database error on {url.display}: {_first_line(error)}"
        ) from error
    finally:
        conn.close()


def _read(conn: Any, configured: str | None) -> Recorded:
    schema = configured or conn.execute("SELECT current_schema()").fetchone()[0]
    tables = {row[0] for row in conn.execute(_TABLES, {"schema": schema})} if schema else set[str]()
    if configured is None and "_schema_version" not in tables:
        other = conn.execute(PG_HISTORY_ELSEWHERE_SQL, {"home": schema or ""}).fetchone()
        if other is not None:
            raise history_elsewhere(schema, other[0])
    where = f'"{schema}"' if schema else ""
    applied = (
        [
            applied_from_row(*row)
            for row in conn.execute(
                "SELECT version, description, checksum, state, applied_at, duration_ms"
                f" FROM {where}._schema_version ORDER BY version"
            )
        ]
        if "_schema_version" in tables
        else []
    )
    resumable = (
        frozenset(row[0] for row in conn.execute(f"SELECT version FROM {where}._schema_backfill"))
        if "_schema_backfill" in tables
        else frozenset()
    )
    holder = conn.execute(PG_HOLDER_SQL, {"k": PG_LOCK_KEY}).fetchone()
    conn.rollback()
    return Recorded(applied, resumable, None if holder is None else describe_pg_holder(holder))


def history_elsewhere(home: str | None, other: str) -> ConfigError:
    """The refusal to read ``home`` as a database with no history while ``other``, further
    down the same default search path, holds one."""
    first = f"schema {home} first" if home else "no existing schema first"
    return ConfigError(
        f"the default search path puts {first}, which has no _schema_version, "
        f"while schema {other} further down the path holds this database's history; set "
        f"database.schema to {other} to go on with that history (or to {home or 'a schema'} "
        "to start a new one there)"
    )


def describe_pg_holder(row: Any) -> str:
    """The run lock's holder, from a row of ``PG_HOLDER_SQL``: what zos wrote into its
    ``application_name``, else the server process and its address."""
    pid, application, address = row
    if isinstance(application, str) and application.startswith("zos: "):
        return f"{application.removeprefix('zos: ')}, server process {pid}"
    return f"server process {pid}" + (f" from {address}" if address else "")


def _first_line(error: BaseException) -> str:
    # As zos.database.first_line, which imports SQLAlchemy.
    text = str(error).strip()
    return mask_url(text.splitlines()[0]) if text else type(error).__name__
