"""The ``_schema_version`` table: create it, read it, write rows to it, on a given connection.

Knows nothing about files. Reading never creates the table, so ``status`` stays read-only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    inspect,
    select,
    update,
)
from sqlalchemy.dialects import mysql

TABLE_NAME = "_schema_version"


class State(StrEnum):
    """How a version row came to be."""

    APPLIED = "applied"  # upgrade() ran and finished
    ADOPTED = "adopted"  # check() found the change already present; upgrade() did not run
    STARTED = "started"  # upgrade() began outside a transaction and has not been seen to finish


_metadata = MetaData()
_versions = Table(
    TABLE_NAME,
    _metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", String(255), nullable=False),
    Column("checksum", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column(
        "applied_at",
        DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb"),
        nullable=False,
    ),
    Column("duration_ms", Integer, nullable=True),
)


@dataclass(frozen=True)
class AppliedMigration:
    """One row of ``_schema_version``."""

    version: int
    description: str
    checksum: str
    state: State
    applied_at: datetime  # naive, UTC
    duration_ms: int | None

    @property
    def finished(self) -> bool:
        return self.state != State.STARTED


def has_version_table(conn: Connection) -> bool:
    return inspect(conn).has_table(TABLE_NAME)


def ensure_version_table(conn: Connection) -> None:
    """Create ``_schema_version`` when it does not exist yet."""
    _metadata.create_all(conn, checkfirst=True)


def read_applied(conn: Connection) -> list[AppliedMigration]:
    """Every recorded version, ascending; empty (creating nothing) when there is no table."""
    if not has_version_table(conn):
        return []
    rows = conn.execute(select(_versions).order_by(_versions.c.version)).all()
    return [
        AppliedMigration(
            version=row.version,
            description=row.description,
            checksum=row.checksum,
            state=State(row.state),
            applied_at=row.applied_at,
            duration_ms=row.duration_ms,
        )
        for row in rows
    ]


def recorded_state(conn: Connection, version: int) -> State | None:
    """The state recorded for ``version``, or None when it has no row."""
    value = conn.execute(
        select(_versions.c.state).where(_versions.c.version == version)
    ).scalar_one_or_none()
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
        _versions.insert().values(
            version=version,
            description=description[:255],
            checksum=checksum,
            state=state.value,
            applied_at=utcnow(),
            duration_ms=duration_ms,
        )
    )


def mark_finished(conn: Connection, version: int, duration_ms: int) -> None:
    """Turn a ``started`` row into an ``applied`` one."""
    conn.execute(
        update(_versions)
        .where(_versions.c.version == version)
        .values(state=State.APPLIED.value, applied_at=utcnow(), duration_ms=duration_ms)
    )


def forget(conn: Connection, version: int) -> None:
    """Delete the row for ``version`` (repairing an unfinished migration so it runs again)."""
    conn.execute(_versions.delete().where(_versions.c.version == version))


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)
