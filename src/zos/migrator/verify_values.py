"""Whether a migration kept the rows ``verify`` filled: every row by its key, every value of
every column, also of a column whose definition changed (compared in a form a lossless type
change keeps equal) or that was renamed (followed by its values), unless ``CHANGES_DATA``
declares it. Reads only a scratch database."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Table

from zos.migrator.verify_data import ColumnShape, TableData, read_rows, reflect, shapes

Row = dict[str, Any]
_NUMBER = re.compile(r"[-+]?\d+(\.\d*)?([eE][-+]?\d+)?")
_DATE = re.compile(r"\d{4}-\d\d-\d\d")


def data_problems(
    conn: Connection,
    filled: Mapping[str, TableData],
    baseline: Mapping[str, list[Row]],
    declared: Mapping[str, frozenset[str]],
    migration: str,
) -> list[str]:
    """Rows of ``baseline`` gone, values changed, columns or tables dropped with their values,
    where no migration declared it in ``CHANGES_DATA``; one sentence per table/column."""
    metadata = reflect(conn)
    added = {n: t for n, t in metadata.tables.items() if n not in filled}
    problems: list[str] = []
    for name, data in filled.items():
        before = baseline[name]
        exempt = declared.get(name, frozenset())
        table = metadata.tables.get(name)
        if table is None:
            table = _renamed_table(conn, data, before, added)
        if table is None:
            if before and "*" not in exempt:
                problems.append(
                    f"{migration}: table {name}: {len(before)} of {len(before)} rows are gone: "
                    f"the table was dropped (declare CHANGES_DATA = {{{name!r}: ['*']}} if "
                    "this is intended)"
                )
            continue
        label = name if table.name == name else f"{name} (renamed {table.name})"
        exempt |= declared.get(table.name, frozenset())
        now = shapes(conn, table)
        after = read_rows(conn, table)
        followed = follow_columns(data.shapes, now, before, after)
        problems += _table_problems(
            f"{migration}: table {label}", data, now, followed, before, after, exempt
        )
    return problems


def follow_columns(
    old: Mapping[str, ColumnShape],
    new: Mapping[str, ColumnShape],
    before: list[Row],
    after: list[Row],
) -> dict[str, str | None]:
    """Each column of ``old`` to its name now: the same name while it exists, else the added
    column holding most of its values (a rename), else the one added column left when one
    column is gone, else None (dropped)."""
    followed: dict[str, str | None] = {c: c for c in old if c in new}
    gone = [c for c in old if c not in new]
    free = [c for c in new if c not in old]
    for column in gone:
        values = Counter(comparable(r[column]) for r in before if r[column] is not None)
        scores = {
            candidate: sum((values & Counter(comparable(r.get(candidate)) for r in after)).values())
            for candidate in free
        }
        best = max(scores, key=lambda c: scores[c], default=None)
        if best is not None and scores[best] > 0:
            followed[column] = best
        elif len(gone) == 1 and len(free) == 1:
            followed[column] = free[0]
        else:
            followed[column] = None
        if followed[column] is not None:
            free.remove(str(followed[column]))
    return followed


def _table_problems(
    where: str,
    data: TableData,
    now: Mapping[str, ColumnShape],
    followed: Mapping[str, str | None],
    before: list[Row],
    after: list[Row],
    exempt: frozenset[str],
) -> list[str]:
    def kept(column: str) -> bool:
        name = followed[column]
        return not (
            column in exempt
            or name in exempt
            or data.shapes[column].derived
            or (name is not None and now[name].derived)
        )

    problems = [
        _dropped(where, column, before, data.key)
        for column in data.shapes
        if followed[column] is None and kept(column) and "*" not in exempt
        if any(row[column] is not None for row in before)
    ]
    compared = [c for c in data.shapes if followed[c] is not None and kept(c)]
    if not data.key or not all(k in compared for k in data.key):
        return problems + _whole_rows(where, before, after, compared, followed, exempt)
    key = list(data.key)
    index = {tuple(comparable(r[str(followed[k])]) for k in key): r for r in after}
    matched = [(r, index.get(tuple(comparable(r[k]) for k in key))) for r in before]
    lost = [r for r, found in matched if found is None]
    if lost and "*" not in exempt:
        problems.append(
            f"{where}: {len(lost)} of {len(before)} rows are gone, e.g. {_row_key(lost[0], key)}"
        )
    for column in (c for c in compared if c not in key):
        name = str(followed[column])
        same = name == column and now[name] == data.shapes[column]
        diffs = [
            (row, found[name])
            for row, found in matched
            if found is not None and not _equal(row[column], found[name], exact=same)
        ]
        if diffs:
            row, value = diffs[0]
            problems.append(
                f"{where}, column {_column_label(column, name)}: {len(diffs)} of {len(before)} "
                f"values changed, e.g. {_row_key(row, key)}: {row[column]!r} -> {value!r} "
                f"({_definition(data.shapes[column], now[name])}declare it in CHANGES_DATA if "
                "this is intended)"
            )
    return problems


def _column_label(column: str, name: str) -> str:
    return column if name == column else f"{column} (renamed {name})"


def _definition(old: ColumnShape, new: ColumnShape) -> str:
    if old == new:
        return ""
    return f"its definition changed from {_shape(old)} to {_shape(new)}; "


def _shape(shape: ColumnShape) -> str:
    return f"{shape.type or 'no type'} {'NULL' if shape.nullable else 'NOT NULL'}"


def _dropped(where: str, column: str, before: list[Row], key: tuple[str, ...]) -> str:
    held = [row for row in before if row[column] is not None]
    sample = f"{_row_key(held[0], list(key))}: " if key else ""
    return (
        f"{where}, column {column}: dropped with {len(held)} of {len(before)} values, e.g. "
        f"{sample}{held[0][column]!r} (declare it in CHANGES_DATA if this is intended)"
    )


def _whole_rows(
    where: str,
    before: list[Row],
    after: list[Row],
    compared: list[str],
    followed: Mapping[str, str | None],
    exempt: frozenset[str],
) -> list[str]:
    # Without a primary key that survived, rows are compared as whole rows of the kept columns.
    now = [str(followed[c]) for c in compared]
    missing = Counter(tuple(comparable(r[c]) for c in compared) for r in before) - Counter(
        tuple(comparable(r.get(c)) for c in now) for r in after
    )
    if not missing or "*" in exempt:
        return []
    gone = next(iter(missing))
    sample = next(r for r in before if tuple(comparable(r[c]) for c in compared) == gone)
    return [
        f"{where}: {sum(missing.values())} of {len(before)} rows are gone or changed, e.g. "
        f"{ {c: sample[c] for c in compared} }"
    ]


def _renamed_table(
    conn: Connection, data: TableData, before: list[Row], added: Mapping[str, Table]
) -> Table | None:
    """The table added since that holds most of ``before``'s rows (a rename), if any."""
    best: tuple[int, Table | None] = (0, None)
    for table in added.values():
        after = read_rows(conn, table)
        followed = follow_columns(data.shapes, shapes(conn, table), before, after)
        columns = [c for c, name in followed.items() if name is not None]
        if not columns:
            continue
        present = Counter(
            tuple(comparable(r.get(str(followed[c]))) for c in columns) for r in after
        )
        found = sum(
            (Counter(tuple(comparable(r[c]) for c in columns) for r in before) & present).values()
        )
        if found > best[0]:
            best = (found, table)
    return best[1]


def _equal(old: Any, new: Any, *, exact: bool) -> bool:
    return bool(old == new) if exact else comparable(old) == comparable(new)


def comparable(value: Any) -> Any:
    """``value`` in a form that a lossless change of its column's type keeps equal: numbers by
    value, text without the padding of a CHAR, dates and times in ISO form (a datetime at
    midnight as its date; an aware one in UTC), JSON in its canonical text."""
    if value is None:
        return None
    if isinstance(value, bool):
        return _number(decimal.Decimal(int(value)))
    if isinstance(value, int | float | decimal.Decimal):
        try:
            return _number(decimal.Decimal(str(value)))
        except decimal.InvalidOperation:
            return str(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        if value.time() == dt.time(0):
            return value.date().isoformat()
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if isinstance(value, str):
        return _text(value.rstrip(" "))
    return repr(value)


def _text(text: str) -> Any:
    if _NUMBER.fullmatch(text):
        return _number(decimal.Decimal(text))
    if _DATE.match(text):
        try:
            return comparable(dt.datetime.fromisoformat(text))
        except ValueError:
            return text
    if text[:1] in ('"', "{", "["):
        try:
            return comparable(json.loads(text))
        except ValueError:
            return text
    return text


def _number(value: decimal.Decimal) -> str:
    if not value.is_finite():
        return str(value)
    return format(value.normalize(), "f")


def _row_key(row: Row, key: list[str]) -> str:
    return ", ".join(f"{k}={row[k]!r}" for k in key)
