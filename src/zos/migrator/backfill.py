"""Batched backfills: data changes over big tables in primary-key ranges, one short transaction
per batch, resumable after a crash. A migration declares ``BATCHES = Batches(...)`` and a
``backfill(conn, low, high)`` function that processes the rows with ``low < key <= high``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from sqlalchemy import Connection


class BackfillFunction(Protocol):
    def __call__(self, conn: Connection, low: Any, high: Any, /) -> None: ...


@dataclass(frozen=True)
class Batches:
    """Which table a backfill walks, by which unique key, and how many rows per transaction.

    The key must be unique, indexed (the primary key is best), and integer or non-empty text.
    """

    table: str
    key: str
    size: int = 10_000

    def __post_init__(self) -> None:
        if not self.table or not self.key:
            raise ValueError("Batches needs a table and a key column")
        if self.size < 1:
            raise ValueError(f"Batches.size must be at least 1, not {self.size}")


def start_key(conn: Connection, batches: Batches) -> Any:
    """A value just below the smallest key, or None when the table is empty."""
    smallest = conn.execute(_sql(f"SELECT MIN({_key(conn, batches)}) FROM {_table(conn, batches)}"))
    value = smallest.scalar()
    if value is None:
        return None
    # Every key is above this, so the first batch is "low < key" like all the others.
    return value - 1 if isinstance(value, int) else ""


def next_high(conn: Connection, batches: Batches, low: Any) -> Any:
    """The key that ends the batch after ``low``, or None when no rows are left."""
    key, table = _key(conn, batches), _table(conn, batches)
    last_of_batch = conn.execute(
        _sql(f"SELECT {key} FROM {table} WHERE {key} > :low ORDER BY {key} LIMIT 1 OFFSET :skip"),
        {"low": low, "skip": batches.size - 1},
    ).scalar()
    if last_of_batch is not None:
        return last_of_batch
    return conn.execute(
        _sql(f"SELECT MAX({key}) FROM {table} WHERE {key} > :low"), {"low": low}
    ).scalar()


def end_key(conn: Connection, batches: Batches) -> Any:
    """The largest key, or None when the table is empty."""
    return conn.execute(
        _sql(f"SELECT MAX({_key(conn, batches)}) FROM {_table(conn, batches)}")
    ).scalar()


def count_between(conn: Connection, batches: Batches, low: Any, high: Any | None = None) -> int:
    """Rows with ``low < key <= high`` (no upper bound when ``high`` is None)."""
    key, table = _key(conn, batches), _table(conn, batches)
    upper = "" if high is None else f" AND {key} <= :high"
    found = conn.execute(
        _sql(f"SELECT COUNT(*) FROM {table} WHERE {key} > :low{upper}"),
        {"low": low, "high": high},
    ).scalar()
    return int(found or 0)


def _sql(sql: str) -> Any:
    # Imported here: migrations import this module, and listing them must stay light.
    from sqlalchemy import text

    return text(sql)


def _key(conn: Connection, batches: Batches) -> str:
    return str(conn.dialect.identifier_preparer.quote(batches.key))


def _table(conn: Connection, batches: Batches) -> str:
    return str(conn.dialect.identifier_preparer.quote(batches.table))
