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

from sqlalchemy import Column, Connection, Dialect, MetaData, Table, exc, inspect, select, types

ROWS_PER_TABLE = 3
# Row 0 leaves every nullable column NULL (references to the same table too); row 1 writes
# non-ASCII text; row 2 the largest value of each integer column that is no key. Rows 1 and 2
# keep every column non-NULL and non-empty, so a blanking UPDATE is seen in at least two rows.
_NULL_ROW, _TEXT_ROW, _BIG_ROW = 0, 1, 2
_NON_ASCII = "é…🙂"
# A project's hook: factory(version, generated_row) -> the row to insert (see _verify.py).
Factory = Callable[[int, dict[str, Any]], Mapping[str, Any]]
_EPOCH = dt.datetime(2024, 2, 29, 12, 0, 0)


@dataclass(frozen=True)
class ColumnShape:
    """What ``verify`` compares of a column's definition between two versions."""

    type: str
    nullable: bool
    derived: bool = False  # computed by the database (a generated column): never compared


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
        c.name: ColumnShape(
            type_text(c.type, conn.dialect), bool(c.nullable), c.computed is not None
        )
        for c in table.columns
    }


def type_text(type_: types.TypeEngine[Any], dialect: Dialect) -> str:
    """The type's DDL as ``dialect`` writes it; an empty string for a column declared without
    a type (SQLite allows it, and SQLAlchemy has no DDL for it)."""
    if isinstance(type_, types.NullType):
        return ""
    try:
        return str(type_.compile(dialect=dialect))
    except exc.CompileError:
        return repr(type_)


def _left_to_the_database(column: Column[Any]) -> bool:
    """A generated (computed) or identity column: the database writes it, never a row."""
    return column.computed is not None or column.identity is not None


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
            if table.name in factories:
                row = _generate(table, number, filled, rows, varied=False)
                candidates = [dict(factories[table.name](version, row))]
            else:
                # The varied row first; the plain one where the database refuses it (a CHECK
                # that wants both of two columns, a character set without the text).
                candidates = [
                    _generate(table, number, filled, rows, varied=True),
                    _generate(table, number, filled, rows, varied=False),
                ]
            rows.append(_insert(conn, table, candidates, checks, number))
        key = tuple(c.name for c in table.primary_key.columns)
        filled[table.name] = TableData(key, shapes(conn, table), rows)
    return filled


def _insert(
    conn: Connection, table: Table, rows: list[dict[str, Any]], checks: list[str], number: int
) -> dict[str, Any]:
    """Insert the first of ``rows``, or of their variants, that the database accepts (the
    variants take values from the CHECK constraints' own literals); returns the row inserted,
    with the key values the database chose.

    Raises:
        FillError: every row and variant (at most ``MAX_VARIANTS`` each) was refused.
    """
    first_error: Exception | None = None
    row = rows[0]
    for base in rows:
        variants = islice(check_variants(table, base, checks, number), MAX_VARIANTS)
        for candidate in [base, *variants]:
            try:
                with conn.begin_nested():
                    result = conn.execute(table.insert(), candidate)
            except Exception as error:  # the driver's refusal: try the next variant
                first_error = first_error or error
                continue
            chosen = result.inserted_primary_key or ()
            keys = {c.name: v for c, v in zip(table.primary_key.columns, chosen, strict=False)}
            return {**{k: v for k, v in keys.items() if v is not None}, **candidate}
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


def _generate(
    table: Table,
    number: int,
    filled: Mapping[str, TableData],
    own: list[dict[str, Any]],
    *,
    varied: bool,
) -> dict[str, Any]:
    """Row ``number`` of ``table``: references copied from a parent's row (a reference to the
    same table: rows after the first point at the first, the first at itself or nowhere);
    ``varied``: NULL, non-ASCII and large values in the rows meant for them."""
    key = {c.name for c in table.primary_key.columns}
    row: dict[str, Any] = {}
    for column in table.columns:
        if _left_to_the_database(column):
            continue
        if varied and number == _NULL_ROW and column.nullable and column.name not in key:
            row[column.name] = None
            continue
        big = varied and number == _BIG_ROW and column.name not in key
        row[column.name] = value_for(column.type, column.name, number, text=varied, big=big)
    for fk in table.foreign_key_constraints:
        pairs = [(e.parent.name, e.column.name) for e in fk.elements]
        if fk.referred_table is table:
            source: Mapping[str, Any] | None = own[0] if own else row
        else:
            parent = filled.get(fk.referred_table.name)
            source = parent.rows[number % len(parent.rows)] if parent and parent.rows else None
        nullable = all(table.columns[name].nullable for name, _ in pairs)
        if source is None or (nullable and row.get(pairs[0][0], 0) is None):
            if nullable:  # a parent not filled yet (a cycle), or the NULL row
                row.update(dict.fromkeys((name for name, _ in pairs), None))
            continue
        for name, referred in pairs:
            if referred in source:
                row[name] = source[referred]
    return row


def value_for(
    type_: types.TypeEngine[Any], name: str, number: int, *, text: bool = False, big: bool = False
) -> Any:
    """A value of ``type_`` distinct for each ``number``, so UNIQUE columns are satisfied;
    ``text``: with non-ASCII characters in row 1; ``big``: an integer type's largest value."""
    if isinstance(type_, types.Enum) and type_.enums:
        return type_.enums[number % len(type_.enums)]
    if isinstance(type_, types.Boolean):
        return number % 2 == 0
    if isinstance(type_, types.DateTime):
        return _EPOCH + dt.timedelta(days=number, microseconds=number + 1)
    if isinstance(type_, types.Date):
        return _EPOCH.date() + dt.timedelta(days=number)
    if isinstance(type_, types.Time):
        return dt.time(12, number % 60, 0)
    if isinstance(type_, types.Integer):
        return _largest(type_) if big else number + 1
    if isinstance(type_, types.Float):
        return number + 0.5
    if isinstance(type_, types.Numeric):
        return decimal.Decimal(number) + decimal.Decimal("0.5")
    if isinstance(type_, types.JSON):
        return {"n": number, "column": name}
    if isinstance(type_, types.LargeBinary):
        return bytes([number % 256]) * 4
    if isinstance(type_, types.String):
        value = (
            f"{number}{_NON_ASCII}-{name}" if text and number == _TEXT_ROW else f"{number}-{name}"
        )
        if type_.length is None:
            # Unbounded text as a JSON string literal: MariaDB reflects JSON as LONGTEXT with a
            # json_valid() CHECK, and this satisfies both.
            return f'"{value}"'
        return value[: type_.length] if type_.length > 1 else str(number % 10)
    return str(number)


def _largest(type_: types.TypeEngine[Any]) -> int:
    """The largest value of a signed integer type (by its DDL name where the dialect's class
    does not tell: TINYINT, MEDIUMINT)."""
    name = type(type_).__name__.upper()
    if "TINY" in name:
        return 2**7 - 1
    if isinstance(type_, types.SmallInteger) or "SMALL" in name:
        return 2**15 - 1
    if "MEDIUM" in name:
        return 2**23 - 1
    if isinstance(type_, types.BigInteger) or "BIG" in name:
        return 2**63 - 1
    return 2**31 - 1
