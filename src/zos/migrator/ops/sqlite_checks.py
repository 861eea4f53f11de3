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


def conversion_checks(old: TableDefinition, new: TableDefinition, temporary: str) -> list[Check]:
    checks = []
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
        if new_affinity in ("INTEGER", "REAL", "NUMERIC"):
            unconverted = f"WHERE typeof({name}) IN ('text', 'blob')"
            failed = f"SELECT count(*) FROM {quote_name(temporary)} {unconverted}"
            if old_affinity in ("INTEGER", "REAL", "NUMERIC"):
                already = f"SELECT count(*) FROM {quote_name(old.name)} {unconverted}"
                failed = f"SELECT ({failed}) - ({already})"
            checks.append(Check(failed, problem))
            # Text holding an integer too big for 64 bits becomes an approximate REAL.
            checks.append(
                Check(
                    f"SELECT count(*) FROM {quote_name(old.name)} WHERE typeof({name}) = 'text'"
                    f" AND typeof(CAST({name} AS NUMERIC)) = 'real'"
                    f" AND CAST(CAST({name} AS NUMERIC) AS TEXT) <> trim({name})"
                    f" AND trim({name}) NOT GLOB '*[.eE]*'",
                    problem,
                )
            )
        elif new_affinity == "TEXT":
            # SQLite writes a REAL as text with 15 significant digits, which may round it.
            checks.append(
                Check(
                    f"SELECT count(*) FROM {quote_name(old.name)} WHERE typeof({name}) = 'real'"
                    f" AND CAST(CAST({name} AS TEXT) AS REAL) <> {name}",
                    problem,
                )
            )
    return checks


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
