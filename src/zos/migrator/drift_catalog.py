"""What Alembic's comparison leaves out of schema drift: CHECK constraints, column collations,
and the WHERE of partial indexes and prefix lengths of MariaDB indexes, read from the database's
catalog through SQLAlchemy's inspector. Read-only; one sentence each.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Connection,
    Dialect,
    ForeignKeyConstraint,
    Index,
    Table,
    inspect,
)
from sqlalchemy.engine import Inspector
from sqlalchemy.exc import SAWarning

from zos.migrator.drift_rules import PG_CAST, action, actions

# PostgreSQL stores a CHECK's text re-written: parenthesised, with casts (``'a'::text``);
# MariaDB quotes names with backticks.
_NOISE = re.compile(r"[\s()`\"]")
# PostgreSQL stores ``x IN ('a', 'b')`` as ``x = ANY (ARRAY['a', 'b'])``.
_ANY_ARRAY = re.compile(r"=anyarray\[([^\]]*)\]")


def catalog_drift(conn: Connection, tables: list[Table]) -> list[str]:
    """Differences in CHECK constraints and column collations between ``tables`` and ``conn``.

    ``tables`` are the schema's tables that exist in the database (a missing table is reported
    as a whole elsewhere).
    """
    inspector = inspect(conn)
    sentences: list[str] = []
    for table in tables:
        sentences += _check_drift(inspector, table, conn.dialect)
        sentences += _collation_drift(inspector, table, conn.dialect)
        sentences += _index_option_drift(inspector, table, conn.dialect)
    return sentences


def _index_option_drift(inspector: Inspector, table: Table, dialect: Dialect) -> list[str]:
    """Indexes of the same name and columns that differ in what Alembic does not compare: a
    partial index's WHERE (PostgreSQL ``postgresql_where``, SQLite ``sqlite_where``) and the
    prefix length of an indexed column (MariaDB/MySQL ``mysql_length``)."""
    declared: dict[str, Index] = {
        str(index.name): index for index in table.indexes if isinstance(index.name, str)
    }
    with warnings.catch_warnings():
        # SQLite's expression indexes: drift.find_drift has reported them from this warning.
        warnings.filterwarnings("ignore", "Skipped unsupported reflection", SAWarning)
        reflected_indexes = inspector.get_indexes(table.name)
    sentences = []
    for reflected in reflected_indexes:
        index = declared.get(str(reflected.get("name")))
        if index is None:
            continue  # missing or extra indexes are Alembic's to report
        options: dict[str, Any] = dict(reflected.get("dialect_options") or {})
        where = f"table {table.name}: index {index.name}"
        found_where = next((v for k, v in options.items() if k.endswith("_where")), None)
        wanted_where = _declared(index, "where")
        if _where_text(found_where, dialect) != _where_text(wanted_where, dialect):
            sentences.append(
                f"{where} is {_shown_where(found_where)} in the database"
                f" but {_shown_where(wanted_where)} in the schema"
            )
        found_length = next((v for k, v in options.items() if k.endswith("_length")), None)
        wanted_length = _declared(index, "length")
        columns = [str(column) for column in reflected.get("column_names") or [] if column]
        if _lengths(found_length, columns) != _lengths(wanted_length, columns):
            sentences.append(
                f"{where} indexes {_shown_lengths(found_length, columns)} in the database"
                f" but {_shown_lengths(wanted_length, columns)} in the schema"
            )
    return sentences


def _declared(index: Index, option: str) -> Any:
    """The index's ``<dialect>_<option>`` keyword for any dialect, None when not given."""
    for key, value in index.dialect_kwargs.items():
        if key.endswith(f"_{option}") and value is not None:
            return value
    return None


def _where_text(value: Any, dialect: Dialect) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value.compile(dialect=dialect))
    return _normal(text, dialect)


def _shown_where(value: Any) -> str:
    return "a full index (every row)" if value is None else f"partial (WHERE {value})"


def _lengths(value: Any, columns: list[str]) -> dict[str, int]:
    # MySQL's mysql_length is one number for every column, or a mapping of column to length.
    if value is None:
        return {}
    if isinstance(value, int):
        return dict.fromkeys(columns, value)
    return {str(column): int(length) for column, length in dict(value).items()}


def _shown_lengths(value: Any, columns: list[str]) -> str:
    lengths = _lengths(value, columns)
    parts = [f"{column}({lengths[column]})" if column in lengths else column for column in columns]
    return f"({', '.join(parts)})"


def sqlite_foreign_key_actions(
    conn: Connection, table: Table
) -> list[tuple[ForeignKeyConstraint, dict[str, str | None]]]:
    """The schema's foreign keys of ``table`` whose ON DELETE/ON UPDATE differ in SQLite's own
    list, with the actions found there; empty on other databases.

    SQLAlchemy reads no action from a column-level ``REFERENCES`` clause, so Alembic cannot see
    them there; ``PRAGMA foreign_key_list`` knows every key's.
    """
    if conn.dialect.name != "sqlite":
        return []
    listed: dict[int, dict[str, Any]] = {}
    quoted = conn.dialect.identifier_preparer.quote(table.name)
    for key, _, referred, column, to, on_update, on_delete, _ in conn.exec_driver_sql(
        f"PRAGMA foreign_key_list({quoted})"
    ):
        found = listed.setdefault(
            key,
            {
                "from": [],
                "to": [],
                "referred": referred,
                "ON DELETE": action(on_delete, "ON DELETE"),
                "ON UPDATE": action(on_update, "ON UPDATE"),
            },
        )
        found["from"].append(column)
        found["to"].append(to)
    differing = []
    for fk in table.foreign_key_constraints:
        for found in listed.values():
            same_key = (
                found["from"] == list(fk.column_keys)
                and found["referred"] == fk.referred_table.name
            )
            wanted = actions(fk)
            if same_key and any(found[what] != wanted[what] for what in wanted):
                differing.append((fk, {what: found[what] for what in wanted}))
    return differing


def _check_drift(inspector: Inspector, table: Table, dialect: Dialect) -> list[str]:
    wanted = {
        _constraint_name(check, dialect): str(check.sqltext)
        for check in table.constraints
        if isinstance(check, CheckConstraint)
    }
    json_columns = {column.name for column in table.columns if isinstance(column.type, JSON)}
    found: dict[str, str] = {}
    for number, check in enumerate(inspector.get_check_constraints(table.name)):
        text = str(check["sqltext"])
        # MariaDB guards its JSON type (a LONGTEXT alias) with a json_valid() check of its own.
        if _normal(text, dialect) in {f"json_valid{column}" for column in json_columns}:
            continue
        found[check.get("name") or f"(unnamed #{number + 1})"] = text
    where = f"table {table.name}: check constraint"
    sentences = []
    for name in sorted(wanted.keys() | found.keys()):
        if name not in found:
            sentences.append(f"{where} {name} ({wanted[name]}) is missing from the database")
        elif name not in wanted:
            sentences.append(
                f"{where} {name} ({found[name]}) is in the database but not in the schema"
            )
        elif _normal(found[name], dialect) != _normal(wanted[name], dialect):
            sentences.append(
                f"{where} {name} is ({found[name]}) in the database"
                f" but ({wanted[name]}) in the schema"
            )
    return sentences


def _collation_drift(inspector: Inspector, table: Table, dialect: Dialect) -> list[str]:
    # A column without its own collation uses the table's (MariaDB/MySQL, which only print a
    # column's COLLATE when it differs from the table's) or the database's (PostgreSQL, SQLite).
    if dialect.name == "sqlite":
        return []  # SQLAlchemy does not reflect SQLite's collations: nothing to compare with
    if dialect.name in ("mysql", "mariadb"):
        options = inspector.get_table_options(table.name)
        default = f"the table's default ({options.get('mysql_collate', 'unknown')})"
    else:
        default = "the database's default"
    sentences = []
    for reflected in inspector.get_columns(table.name):
        column = table.columns.get(reflected["name"])
        if column is None or isinstance(column.type, JSON):
            continue  # an extra column is reported elsewhere; JSON carries its own on MariaDB
        declared = getattr(column.type.dialect_impl(dialect), "collation", None)
        found = getattr(reflected["type"], "collation", None)
        if _default_if_table_default(found, default) != _default_if_table_default(
            declared, default
        ):
            sentences.append(
                f"table {table.name}: column {column.name} has collation"
                f" {found or default} in the database but {declared or default} in the schema"
            )
    return sentences


def _default_if_table_default(collation: str | None, default: str) -> str:
    return default if collation is None or default.endswith(f"({collation})") else collation


def _constraint_name(check: CheckConstraint, dialect: Dialect) -> str:
    """The name the database knows, the schema's naming convention applied."""
    name: Any = dialect.identifier_preparer.format_constraint(check)
    return str(name).strip('`"') if name else "(unnamed)"


def _normal(sql: str, dialect: Dialect) -> str:
    """A CHECK's text without what databases add or drop when they store it."""
    text = _NOISE.sub("", PG_CAST.sub("", sql.lower())).replace("!=", "<>")
    if dialect.name in ("mysql", "mariadb"):
        # MariaDB/MySQL store length() as octet_length(), the same function there (not on
        # PostgreSQL, where length() counts characters).
        text = text.replace("octet_length", "length")
    return _ANY_ARRAY.sub(r"in\1", text)
