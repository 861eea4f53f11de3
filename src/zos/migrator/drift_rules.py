"""When a definition reflected from a database counts as the one ``zos.schema`` declares:
types, server defaults and foreign-key actions, less what each dialect adds or drops when it
stores them. Pure functions but one, which asks MariaDB's catalog about its JSON columns.
"""

from __future__ import annotations

import re
from typing import Any

from alembic.migration import MigrationContext
from sqlalchemy import Column, DefaultClause, Dialect, ForeignKeyConstraint, text
from sqlalchemy.exc import CompileError
from sqlalchemy.types import TypeEngine

# A type's collation (and MySQL's character set) is compared on its own, in drift_catalog.
_CHARSET_OR_COLLATION = re.compile(r"\s+(?:CHARACTER SET|COLLATE)\s+\S+")
# Display widths (INT(11)) change nothing stored; MariaDB reports them, SQLAlchemy omits them.
_INTEGER_DISPLAY_WIDTH = re.compile(r"^(TINYINT|SMALLINT|MEDIUMINT|INT|INTEGER|BIGINT)\(\d+\)")
# PostgreSQL stores defaults and CHECKs with casts added ('a'::character varying); the few
# type names with spaces are spelt out, so a cast never swallows the words that follow it.
PG_CAST = re.compile(
    r"::(?:character varying|double precision|timestamp(?: with(?:out)? time zone)?"
    r"|time(?: with(?:out)? time zone)?|[a-z_][a-z0-9_]*)(?:\(\d+(?:,\s*\d+)?\))?(?:\[\])?",
    re.IGNORECASE,
)
_NOW = re.compile(r"(?:current_timestamp|now|localtimestamp)(?:\(\d*\))?", re.IGNORECASE)


def actions(fk: ForeignKeyConstraint) -> dict[str, str | None]:
    """The key's ``{"ON DELETE": ..., "ON UPDATE": ...}`` actions, each as ``action`` gives it."""
    return {
        "ON DELETE": action(fk.ondelete, "ON DELETE"),
        "ON UPDATE": action(fk.onupdate, "ON UPDATE"),
    }


def action(value: str | None, what: str) -> str | None:
    """``ON DELETE CASCADE`` and the like; None for the default, which every database calls
    NO ACTION (MariaDB/MySQL treat RESTRICT the same and print neither).
    """
    if value is None or value.upper() == "NO ACTION":
        return None
    return f"{what} {' '.join(value.upper().split())}"


def defaults_differ(
    context: MigrationContext,
    inspected_column: Column[Any],
    metadata_column: Column[Any],
    inspected_default: str | None,
    metadata_default: Any,
    rendered_metadata_default: str | None,
) -> bool:
    # Returning a bool, never None, keeps Alembic's own (dialect-specific) comparison out of it.
    if isinstance(metadata_default, DefaultClause) and isinstance(metadata_default.arg, str):
        rendered_metadata_default = literal(metadata_default.arg)
    found, wanted = default_text(inspected_default), default_text(rendered_metadata_default)
    if found is not None and found.startswith("nextval(") and wanted is None:
        # PostgreSQL's SERIAL: the sequence behind an autoincrementing key, not a declared default.
        return not (metadata_column.primary_key and metadata_column.autoincrement in (True, "auto"))
    return found != wanted


def literal(value: str) -> str:
    """``value`` as an SQL string literal: how a plain string ``server_default`` is declared."""
    return "'" + value.replace("'", "''") + "'"


def default_text(sql: str | None) -> str | None:
    """A server default's SQL without what databases add when they store it: PostgreSQL's casts,
    wrapping parentheses, quotes around a number, and the spellings of the current time.
    """
    if sql is None:
        return None
    text = PG_CAST.sub("", sql.strip())
    while text.startswith("(") and text.endswith(")") and _balanced(text[1:-1]):
        text = text[1:-1].strip()
    if re.fullmatch(r"'-?\d+(?:\.\d+)?'", text):
        text = text[1:-1]
    if _NOW.fullmatch(text):
        return "current_timestamp"
    return None if text.upper() == "NULL" else text


def _balanced(text: str) -> bool:
    depth = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def types_differ(
    context: MigrationContext,
    inspected_column: Column[Any],
    metadata_column: Column[Any],
    inspected_type: TypeEngine[Any],
    metadata_type: TypeEngine[Any],
) -> bool:
    # Returning a bool, never None, keeps Alembic's looser fallback comparison out of it.
    inspected = type_text(inspected_type, context.dialect)
    expected = type_text(metadata_type, context.dialect)
    if (inspected, expected) == ("LONGTEXT", "JSON"):
        return not is_mariadb_json(context, inspected_column)
    return inspected != expected


def type_text(type_: TypeEngine[Any], dialect: Dialect) -> str:
    """The type as ``dialect`` would declare it, less what reflection reports but never stores."""
    try:
        declared = type_.compile(dialect=dialect)
    except CompileError:
        return repr(type_)
    # Collations are compared on their own (drift_catalog), in a sentence of their own.
    declared = _CHARSET_OR_COLLATION.sub("", " ".join(declared.upper().split()))
    if is_mysql(dialect):
        # MySQL has no boolean type: BOOL is an alias that MariaDB reports as TINYINT(1).
        if declared == "TINYINT(1)":
            return "BOOL"
        declared = _INTEGER_DISPLAY_WIDTH.sub(r"\1", declared)
    elif dialect.name == "postgresql" and declared == "FLOAT":
        # FLOAT without a precision is DOUBLE PRECISION, which is what PostgreSQL reports.
        return "DOUBLE PRECISION"
    return declared


def is_mariadb_json(context: MigrationContext, column: Column[Any]) -> bool:
    """Whether MariaDB guards this LONGTEXT with the json_valid() check its JSON type adds.

    SQLAlchemy does not reflect MariaDB's column-level checks, so the catalog is asked directly.
    """
    conn = context.connection
    if conn is None or not getattr(context.dialect, "is_mariadb", False):
        return False
    clauses = conn.execute(
        text(
            "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS"
            " WHERE CONSTRAINT_SCHEMA = DATABASE() AND TABLE_NAME = :table"
        ),
        {"table": column.table.name},
    ).scalars()
    wanted = f"json_valid({column.name})".lower()
    return any(re.sub(r"[`\s]", "", str(clause)).lower() == wanted for clause in clauses)


def is_mysql(dialect: Dialect) -> bool:
    return dialect.name in ("mysql", "mariadb")
