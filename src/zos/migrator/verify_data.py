"""Rows for ``verify``: generated from a database's reflected schema (or a project's factories),
inserted parents first, and read back for comparison. Reads and writes only a scratch database.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, MetaData, Table, inspect, select, types

ROWS_PER_TABLE = 3
# A project's hook: factory(version, generated_row) -> the row to insert (see _verify.py).
Factory = Callable[[int, dict[str, Any]], Mapping[str, Any]]
_EPOCH = dt.datetime(2024, 2, 29, 12, 0, 0)


@dataclass(frozen=True)
class ColumnShape:
    """What ``verify`` compares of a column's definition between two versions."""

    type: str
    nullable: bool


@dataclass(frozen=True)
class TableData:
    """A table as it was filled: its key columns, column shapes and rows."""

    key: tuple[str, ...]  # primary-key columns; empty: rows are compared as whole rows
    shapes: dict[str, ColumnShape]
    rows: list[dict[str, Any]]


class FillError(Exception):
    """A generated row was refused by the database (a CHECK or trigger a generator cannot see)."""


def reflect(conn: Connection) -> MetaData:
    """Every table of the database but the internal ones (names starting with ``_``)."""
    metadata = MetaData()
    names = [n for n in inspect(conn).get_table_names() if not n.startswith("_")]
    metadata.reflect(conn, only=names)
    return metadata


def shapes(conn: Connection, table: Table) -> dict[str, ColumnShape]:
    return {
        c.name: ColumnShape(str(c.type.compile(dialect=conn.dialect)), bool(c.nullable))
        for c in table.columns
    }


def fill(conn: Connection, version: int, factories: Mapping[str, Factory]) -> dict[str, TableData]:
    """Insert ``ROWS_PER_TABLE`` rows into every table, parents first, every column set.

    Raises:
        FillError: the database refused a row; names the table and the row.
    """
    metadata = reflect(conn)
    filled: dict[str, TableData] = {}
    for table in metadata.sorted_tables:
        rows: list[dict[str, Any]] = []
        for number in range(ROWS_PER_TABLE):
            row = _generate(table, number, filled)
            if table.name in factories:
                row = dict(factories[table.name](version, row))
            try:
                with conn.begin_nested():
                    conn.execute(table.insert(), row)
            except Exception as error:  # any refusal is reported with the row, then stops
                raise FillError(
                    f"table {table.name}: the database refused generated row {row!r}: "
                    f"{str(error).splitlines()[0]}; register a row factory for it in _verify.py"
                ) from error
            rows.append(row)
        key = tuple(c.name for c in table.primary_key.columns)
        filled[table.name] = TableData(key, shapes(conn, table), rows)
    return filled


def read_rows(conn: Connection, table: Table) -> list[dict[str, Any]]:
    return [dict(row) for row in conn.execute(select(table)).mappings()]


def _generate(table: Table, number: int, filled: Mapping[str, TableData]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for fk in table.foreign_key_constraints:
        parent = filled.get(fk.referred_table.name)
        if parent is None or not parent.rows:
            continue  # a self-reference: left to the value generator, or NULL below
        source = parent.rows[number % len(parent.rows)]
        for element in fk.elements:
            row[element.parent.name] = source[element.column.name]
    for column in table.columns:
        if column.name in row:
            continue
        if column.foreign_keys and column.nullable:
            row[column.name] = None  # a reference to this very table, or to no filled table
            continue
        row[column.name] = value_for(column.type, column.name, number)
    return row


def value_for(type_: types.TypeEngine[Any], name: str, number: int) -> Any:
    """A value of ``type_`` distinct for each ``number``, so UNIQUE columns are satisfied."""
    if isinstance(type_, types.Boolean):
        return number % 2 == 0
    if isinstance(type_, types.DateTime):
        return _EPOCH + dt.timedelta(days=number, microseconds=number + 1)
    if isinstance(type_, types.Date):
        return _EPOCH.date() + dt.timedelta(days=number)
    if isinstance(type_, types.Time):
        return dt.time(12, number % 60, 0)
    if isinstance(type_, types.Integer):
        return number + 1
    if isinstance(type_, types.Float):
        return number + 0.5
    if isinstance(type_, types.Numeric):
        return decimal.Decimal(number) + decimal.Decimal("0.5")
    if isinstance(type_, types.JSON):
        return {"n": number, "column": name}
    if isinstance(type_, types.LargeBinary):
        return bytes([number % 256]) * 4
    if isinstance(type_, types.String):
        text = f"{number}-{name}"
        if type_.length is None:
            # Unbounded text as a JSON string literal: MariaDB reflects JSON as LONGTEXT with a
            # json_valid() CHECK, and this satisfies both.
            return f'"{text}"'
        return text[: type_.length] if type_.length > 1 else str(number % 10)
    return str(number)
