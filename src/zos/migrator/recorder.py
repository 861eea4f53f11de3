"""The ``_schema_version`` table: create it, read it, write rows to it, on a given connection.

Knows nothing about files. Reading never creates the table, so ``status`` stays read-only.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    inspect,
    select,
    type_coerce,
    update,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from zos.errors import MigrationHistoryError
from zos.migrator.records import AppliedMigration, BackfillCursor, State, applied_from_row

TABLE_NAME = "_schema_version"
BACKFILL_TABLE_NAME = "_schema_backfill"


class _Timestamp(TypeDecorator[datetime]):
    """A naive UTC timestamp, with microseconds on MySQL/MariaDB too.

    The MySQL dialect is imported only when it is the one in use: it is a measurable part of
    every ``zos db migrate``'s start on the other databases.
    """

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            from sqlalchemy.dialects.mysql import DATETIME

            return dialect.type_descriptor(DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())


_metadata = MetaData()
_versions = Table(
    TABLE_NAME,
    _metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", String(255), nullable=False),
    Column("checksum", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("applied_at", _Timestamp(), nullable=False),
    Column("duration_ms", Integer, nullable=True),
)
# Where an unfinished batched backfill stands: the last key done commits with each batch.
_cursors = Table(
    BACKFILL_TABLE_NAME,
    _metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("last_key", String(255), nullable=True),  # JSON; null before the first batch
    Column("rows_done", BigInteger, nullable=False),
)


def configured_schema(conn: Connection) -> str | None:
    """The schema (PostgreSQL) or database (MariaDB/MySQL) of ``database.schema``, which every
    statement on zos's tables names, whatever the session's search path or current database."""
    translated = conn.get_execution_options().get("schema_translate_map") or {}
    schema = translated.get(None)
    return schema if isinstance(schema, str) else None


def _home(conn: Connection) -> str | None:
    """Where unqualified names create tables: ``database.schema``, else the session's own
    (PostgreSQL's first existing schema on the search path). Asked of the inspector so that a
    ``_schema_version`` of another schema further down the search path never counts."""
    return configured_schema(conn) or conn.dialect.default_schema_name


def has_version_table(conn: Connection) -> bool:
    """Whether ``_schema_version`` is where this database's history belongs.

    Raises:
        ConfigError: it is not, but PostgreSQL's default search path has another schema that
            holds one (a migration may have put an empty schema first): which one is meant
            must be set in ``database.schema``, never guessed, nor taken for no history.
    """
    home = _home(conn)
    if inspect(conn).has_table(TABLE_NAME, schema=home):
        return True
    if conn.dialect.name == "postgresql":
        from zos.migrator.dialects.direct import PG_HISTORY_ELSEWHERE_SQL, history_elsewhere

        other = conn.exec_driver_sql(PG_HISTORY_ELSEWHERE_SQL, {"home": home or ""}).scalar()
        if other is not None:
            raise history_elsewhere(home, str(other))
    return False


def ensure_version_table(conn: Connection) -> None:
    """Create ``_schema_version`` (and on PostgreSQL its schema) when it does not exist yet."""
    schema = configured_schema(conn)
    if schema is not None and conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    _versions.create(conn, checkfirst=True)


def read_applied(conn: Connection) -> list[AppliedMigration]:
    """Every recorded version, ascending; empty (creating nothing) when there is no table.

    Raises:
        MigrationHistoryError: a row holds a value zos never writes.
    """
    if not has_version_table(conn):
        return []
    # applied_at as the driver gives it: SQLAlchemy's SQLite DateTime would raise a bare
    # ValueError on a bad value, and records.applied_from_row names the row instead.
    raw = [type_coerce(_versions.c.applied_at, String).label("applied_at")]
    columns = [c for c in _versions.c if c.name != "applied_at"]
    query = select(*columns, *raw).order_by(_versions.c.version)
    return [
        applied_from_row(
            row.version, row.description, row.checksum, row.state, row.applied_at, row.duration_ms
        )
        for row in conn.execute(query)
    ]


# Built once: they run for every migration, and rebuilding a statement costs more than running it.
_STATE_OF = select(_versions.c.state).where(_versions.c.version == bindparam("v"))
_INSERT = _versions.insert()


def recorded_state(conn: Connection, version: int) -> State | None:
    """The state recorded for ``version``, or None when it has no row."""
    value = conn.execute(_STATE_OF, {"v": version}).scalar_one_or_none()
    return None if value is None else State(value)


def record(
    conn: Connection,
    *,
    version: int,
    description: str,
    checksum: str,
    state: State,
    duration_ms: int | None = None,
) -> None:
    """Insert the row for ``version``."""
    conn.execute(
        _INSERT,
        {
            "version": version,
            "description": description[:255],
            "checksum": checksum,
            "state": state.value,
            "applied_at": utcnow(),
            "duration_ms": duration_ms,
        },
    )


class RecordMismatch(MigrationHistoryError):
    """A change to the version tables did not change exactly the one row it was meant to."""


def _exactly_one(changed: int, what: str) -> None:
    # Every step of the state machine changes one row; anything else means another process
    # changed the history under this runner, and going on would record a lie.
    if changed != 1:
        raise RecordMismatch(
            f"{what} changed {changed} rows of the version tables instead of 1: another "
            "process changed the migration history during this run; nothing more was recorded"
        )


def ensure_unrecorded(conn: Connection, version: int) -> None:
    """Raise ``RecordMismatch`` when ``version`` already has a row (the run lock was bypassed)."""
    state = recorded_state(conn, version)
    if state is not None:
        raise RecordMismatch(
            f"version {version} was recorded as {state} by another process during this run; "
            "nothing more was recorded"
        )


def mark_finished(conn: Connection, version: int, duration_ms: int) -> None:
    """Turn the ``started`` row of ``version`` into an ``applied`` one."""
    result = conn.execute(
        update(_versions)
        .where(_versions.c.version == version, _versions.c.state == State.STARTED.value)
        .values(state=State.APPLIED.value, applied_at=utcnow(), duration_ms=duration_ms)
    )
    _exactly_one(result.rowcount, f"marking version {version} applied")


def forget(conn: Connection, version: int) -> None:
    """Delete the ``started`` row of ``version`` (repairing it so it runs again)."""
    result = conn.execute(
        _versions.delete().where(
            _versions.c.version == version, _versions.c.state == State.STARTED.value
        )
    )
    _exactly_one(result.rowcount, f"forgetting version {version}")


def replace_checksum(conn: Connection, version: int, old: str, new: str) -> None:
    """Record ``new`` as the checksum of ``version``, whose row holds ``old``."""
    result = conn.execute(
        update(_versions)
        .where(_versions.c.version == version, _versions.c.checksum == old)
        .values(checksum=new)
    )
    _exactly_one(result.rowcount, f"updating the checksum of version {version}")


def read_cursors(conn: Connection) -> dict[int, BackfillCursor]:
    """Every unfinished backfill's cursor; empty, creating nothing, when there is no table."""
    if not inspect(conn).has_table(BACKFILL_TABLE_NAME, schema=_home(conn)):
        return {}
    rows = conn.execute(select(_cursors)).all()
    return {
        row.version: BackfillCursor(
            row.version, None if row.last_key is None else json.loads(row.last_key), row.rows_done
        )
        for row in rows
    }


def start_cursor(conn: Connection, version: int) -> None:
    """Record that a backfill's schema part is done and its batches may begin."""
    _cursors.create(conn, checkfirst=True)
    conn.execute(_cursors.insert().values(version=version, last_key=None, rows_done=0))


def read_cursor(
    conn: Connection, version: int, *, table_exists: bool = False
) -> BackfillCursor | None:
    """The cursor of one backfill, or None when it has none (or there is no cursor table;
    ``table_exists`` skips that look when the caller knows)."""
    if not table_exists and not inspect(conn).has_table(BACKFILL_TABLE_NAME, schema=_home(conn)):
        return None
    row = conn.execute(select(_cursors).where(_cursors.c.version == version)).first()
    if row is None:
        return None
    last_key = None if row.last_key is None else json.loads(row.last_key)
    return BackfillCursor(row.version, last_key, row.rows_done)


def advance_cursor(conn: Connection, cursor: BackfillCursor, last_key: Any, rows: int) -> None:
    """Move ``cursor`` on to ``last_key``, only if it still stands where it was read.

    The comparison makes the batch and its cursor one compare-and-set: a batch that another
    process already processed changes nothing here and fails the batch.
    """
    old = _cursors.c.last_key
    where = old.is_(None) if cursor.last_key is None else old == json.dumps(cursor.last_key)
    result = conn.execute(
        update(_cursors)
        .where(_cursors.c.version == cursor.version, _cursors.c.rows_done == cursor.rows_done)
        .where(where)
        .values(last_key=json.dumps(last_key), rows_done=cursor.rows_done + rows)
    )
    _exactly_one(result.rowcount, f"advancing the backfill cursor of version {cursor.version}")


def drop_cursor(conn: Connection, version: int) -> None:
    result = conn.execute(_cursors.delete().where(_cursors.c.version == version))
    _exactly_one(result.rowcount, f"removing the backfill cursor of version {version}")


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)
