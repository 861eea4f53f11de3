"""Rows for ``verify``: generated from a database's reflected schema (or a project's factories),
inserted parents first, and read back for comparison. Reads and writes only a scratch database.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from itertools import islice, product
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
        checks = [] if table.name in factories else check_clauses(conn, table)
        for number in range(ROWS_PER_TABLE):
            row = _generate(table, number, filled)
            if table.name in factories:
                row = dict(factories[table.name](version, row))
            rows.append(_insert(conn, table, row, checks, number))
        key = tuple(c.name for c in table.primary_key.columns)
        filled[table.name] = TableData(key, shapes(conn, table), rows)
    return filled


def _insert(
    conn: Connection, table: Table, row: dict[str, Any], checks: list[str], number: int
) -> dict[str, Any]:
    """Insert ``row``, or the first variant of it that the table's CHECK constraints accept
    (values taken from the constraints' own literals); returns the row inserted.

    Raises:
        FillError: every variant (at most ``MAX_VARIANTS``) was refused.
    """
    first_error: Exception | None = None
    for candidate in [row, *islice(check_variants(table, row, checks, number), MAX_VARIANTS)]:
        try:
            with conn.begin_nested():
                conn.execute(table.insert(), candidate)
        except Exception as error:  # the driver's refusal: try the next variant
            first_error = first_error or error
            continue
        return candidate
    assert first_error is not None
    raise FillError(
        f"table {table.name}: the database refused generated row {row!r}: "
        f"{str(first_error).splitlines()[0]}; register a row factory for it in _verify.py"
    ) from first_error


def check_clauses(conn: Connection, table: Table) -> list[str]:
    """The SQL text of ``table``'s CHECK constraints as the database reports them (empty
    where the dialect cannot reflect them)."""
    try:
        found = inspect(conn).get_check_constraints(table.name, schema=table.schema)
    except NotImplementedError:
        return []
    return [str(check["sqltext"]) for check in found]


def check_variants(
    table: Table, row: Mapping[str, Any], checks: list[str], number: int
) -> Iterator[dict[str, Any]]:
    """Variants of ``row`` for CHECK constraints a plain generated value may break: each
    column a constraint names gets, in turn, the literals the constraint compares it with
    (a number also one and two above and below it, for ranges), rotated by ``number`` so rows
    differ where a UNIQUE constraint needs it; NULL last where the column allows it.

    A pure function of its inputs; yields nothing when no constraint names a column."""
    choices: dict[str, list[Any]] = {}
    for clause in checks:
        literals = _literals(clause)
        for column in table.columns:
            if column.name in row and re.search(rf"\b{re.escape(column.name)}\b", clause, re.I):
                values = [v for v in (_as(column.type, lit) for lit in literals) if v is not None]
                values = _rotated(list(dict.fromkeys(values)), number)
                if column.nullable:
                    values.append(None)
                choices.setdefault(column.name, []).extend(
                    v for v in values if v not in choices.get(column.name, [])
                )
    if not choices:
        return
    names = list(choices)
    for combination in product(*(choices[name] for name in names)):
        yield {**row, **dict(zip(names, combination, strict=True))}


MAX_VARIANTS = 200
_LITERAL = re.compile(r"'((?:[^']|'')*)'|(?<![\w.])(-?\d+(?:\.\d+)?)(?![\w.])")


def _literals(clause: str) -> list[str | decimal.Decimal]:
    found: list[str | decimal.Decimal] = []
    for match in _LITERAL.finditer(clause):
        if match.group(1) is not None:
            found.append(match.group(1).replace("''", "'"))
        else:
            value = decimal.Decimal(match.group(2))
            found.extend(value + step for step in (0, 1, -1, 2, -2))
    return found


def _as(type_: types.TypeEngine[Any], literal: str | decimal.Decimal) -> Any:
    """``literal`` as a value of ``type_``, or None when it cannot be one."""
    try:
        if isinstance(type_, types.Boolean):
            return None
        if isinstance(type_, types.Integer):
            return int(decimal.Decimal(literal)) if decimal.Decimal(literal) % 1 == 0 else None
        if isinstance(type_, types.Float):
            return float(literal)
        if isinstance(type_, types.Numeric):
            return decimal.Decimal(literal)
        if isinstance(type_, types.DateTime):
            return dt.datetime.fromisoformat(str(literal))
        if isinstance(type_, types.Date):
            return dt.date.fromisoformat(str(literal))
        if isinstance(type_, types.String):
            text = str(literal)
            return text if type_.length is None or len(text) <= type_.length else None
    except (ValueError, ArithmeticError):
        return None
    return None


def _rotated(values: list[Any], number: int) -> list[Any]:
    if not values:
        return values
    start = number % len(values)
    return values[start:] + values[:start]


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
