"""The checks of an SQLite rebuild, as text: that the stored definition was read as SQLite
reads it, and that every value of a retyped column converts unchanged. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass

from zos.migrator.ops.common import Refused
from zos.migrator.ops.sqlite_text import TableDefinition
from zos.migrator.ops.sqlite_tokens import quote_name, same_name, tokenize


@dataclass(frozen=True)
class Check:
    """A query run after the rows are copied; a count above zero refuses the change."""

    sql: str
    problem: str


def affinity(declared: str) -> str:
    """The column affinity SQLite gives a declared type (https://sqlite.org/datatype3.html#affname)."""
    upper = declared.upper()
    if "INT" in upper:
        return "INTEGER"
    if any(word in upper for word in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if "BLOB" in upper or not upper.strip():
        return "BLOB"
    if any(word in upper for word in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    return "NUMERIC"


# NUMERIC-affinity types that hold numbers; others (DATE, DATETIME, TIME, JSON, BOOLEAN...) get
# NUMERIC affinity by SQLite's rule only because no other fits, and are stored as text by
# SQLAlchemy: for those, a value kept as text is kept, not "unconverted".
_NUMBER_WORDS = ("NUM", "DEC")


def conversion_checks(
    old: TableDefinition, new: TableDefinition, temporary: str, schema: str | None = None
) -> list[Check]:
    """The checks that every value of a retyped column comes back the same from the copy.

    A value is the same when it is equal in the same storage class, when it is text that
    became a number whose text is exactly the old text ('7' to 7, not '007', ' 12' or '1.10'),
    or a number that became an exactly equal number (5 to 5.0, not 2**53 + 1 to a REAL) or
    the text of itself. In a column of INTEGER affinity, or a number type of NUMERIC affinity,
    a value left as text or blob (or as a fraction, for INTEGER) did not convert at all.
    ``schema`` qualifies the table names.
    """
    checks = []
    prefix = "" if schema is None else f"{quote_name(schema)}."
    source, target = prefix + quote_name(old.name), prefix + quote_name(temporary)
    for column in new.columns:
        before = old.column(column.name)
        if before is None or before.generated or column.generated:
            continue
        if _normal(before.type_text) == _normal(column.type_text):
            continue
        name = quote_name(column.name)
        old_affinity, new_affinity = affinity(before.type_text), affinity(column.type_text)
        problem = (
            f"column {column.name}: a value cannot be stored as {column.type_text or 'BLOB'}"
            " without changing it"
        )
        checks.append(Check(_changed_values(old, new, column.name, source, target), problem))
        numbers = new_affinity in ("INTEGER", "REAL") or (
            new_affinity == "NUMERIC"
            and any(word in column.type_text.upper() for word in _NUMBER_WORDS)
        )
        if numbers:
            leftovers = [("'text', 'blob'", old_affinity in ("INTEGER", "REAL", "NUMERIC"))]
            if new_affinity == "INTEGER":
                leftovers.append(("'real'", old_affinity == "INTEGER"))
            for classes, already_there in leftovers:
                unconverted = f"WHERE typeof({name}) IN ({classes})"
                failed = f"SELECT count(*) FROM {target} {unconverted}"
                if already_there:  # not made by this change: the old type allowed them too
                    failed = f"SELECT ({failed}) - (SELECT count(*) FROM {source} {unconverted})"
                checks.append(Check(failed, problem))
        elif new_affinity == "TEXT":
            # SQLite writes a REAL as text with 15 significant digits, which may round it.
            checks.append(
                Check(
                    f"SELECT count(*) FROM {source} WHERE typeof({name}) = 'real'"
                    f" AND CAST(CAST({name} AS TEXT) AS REAL) <> {name}",
                    problem,
                )
            )
    return checks


def _changed_values(
    old: TableDefinition, new: TableDefinition, column: str, source: str, target: str
) -> str:
    """Rows whose value of ``column`` in ``target`` is not the same as in ``source`` (or that
    cannot be paired: rows pair by rowid, or by primary key in a WITHOUT ROWID table).
    ``quote()`` compares without affinity: a plain ``=`` would read '007' as 7."""
    keys = _pairing(old, new)
    if keys is None:
        return "SELECT 1"  # no way to pair the rows: refuse rather than guess
    name = quote_name(column)
    paired = " AND ".join(f"o.{quote_name(o)} IS n.{quote_name(n)}" for o, n in keys)
    picked = ", ".join(f"{quote_name(n)}" for _, n in keys)
    o, n = f"o.{name}", "n._zos_value"
    numbers = "('integer', 'real')"
    same = (
        f"quote({o}) = quote({n})"
        f" OR (typeof({o}) = 'text' AND typeof({n}) IN {numbers}"
        f" AND quote({o}) = quote(CAST({n} AS TEXT)))"
        f" OR (typeof({o}) IN {numbers} AND typeof({n}) IN {numbers} AND {o} = {n})"
        f" OR (typeof({o}) IN {numbers} AND typeof({n}) = 'text'"
        f" AND quote({n}) = quote(CAST({o} AS TEXT)))"
    )
    return (
        f"SELECT count(*) FROM {source} AS o LEFT JOIN"
        f" (SELECT {picked}, {name} AS _zos_value, 1 AS _zos_found FROM {target}) AS n"
        f" ON {paired} WHERE n._zos_found IS NULL OR NOT ({same})"
    )


def _pairing(old: TableDefinition, new: TableDefinition) -> list[tuple[str, str]] | None:
    """Names that pair a row of ``old`` with its copy in ``new``: the rowid, else the key."""
    if not old.without_rowid and not new.without_rowid:
        names = [
            next((n for n in ("rowid", "_rowid_", "oid") if table.column(n) is None), None)
            for table in (old, new)
        ]
        if names[0] is not None and names[1] is not None:
            return [(names[0], names[1])]
    keys = [c.name for c in old.columns if c.find("PRIMARY")] or next(
        (list(c.names) for c in old.constraints if c.kind == "PRIMARY"), []
    )
    if not keys or any(new.column(key) is None for key in keys):
        return None
    return [(key, key) for key in keys]


def _normal(declared: str) -> str:
    return " ".join(declared.upper().split())


def check_reading(table: TableDefinition, pragma_rows: list[tuple[object, ...]]) -> None:
    """Refuse unless the parse agrees with SQLite's own ``PRAGMA table_xinfo`` rows
    (cid, name, type, notnull, dflt_value, pk, hidden) on every column's name, type and default.

    Raises:
        Refused: the parse and SQLite disagree.
    """
    if len(pragma_rows) != len(table.columns):
        raise Refused(f"table {table.name}: the stored definition was not read with certainty")
    for row, column in zip(pragma_rows, table.columns, strict=True):
        declared = str(row[2])
        default = None if row[4] is None else str(row[4])
        defaults = column.find("DEFAULT")
        parsed_default = (
            None if not defaults else table.sql[defaults[-1].body.start : defaults[-1].body.end]
        )
        agree = (
            same_name(str(row[1]), column.name)
            and _type_words(declared) == _type_words(column.type_text)
            and _default_words(default) == _default_words(parsed_default)
        )
        if not agree:
            raise Refused(
                f"table {table.name}: column {row[1]} was not read with certainty from its "
                "stored definition; change it by hand"
            )


def _type_words(declared: str) -> str:
    text = "".join(
        t.text if t.kind not in ("quoted", "string") else t.text[1:-1]
        for t in tokenize(declared)
        if t.kind != "comment"
    )
    return " ".join(text.upper().split())


def _default_words(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if value.startswith("(") and value.endswith(")"):
        value = value[1:-1]
    return re.sub(r"\s+", " ", value.strip())
