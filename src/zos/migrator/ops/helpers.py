"""The table-change helpers a migration calls: native ALTER TABLE where the database has it,
otherwise SQLite's rebuild from the table's own stored definition. Always inside the
migration's transaction; never commits. SQL text given here reaches the database as written."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Column, Connection, inspect
from sqlalchemy.schema import CreateColumn, DefaultClause
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.types import TypeEngine

from zos.migrator.ops import mysql, postgresql, sqlite, sqlite_rebuild
from zos.migrator.ops.common import (
    UNCHANGED,
    Refused,
    Unchanged,
    backend,
    execute,
    quote,
    quote_all,
)
from zos.migrator.ops.sqlite_tokens import quote_name

# SQLite's ADD COLUMN refuses a default that is not a constant: CURRENT_TIME/DATE/TIMESTAMP or
# an expression in parentheses.
_SQLITE_NON_CONSTANT = re.compile(r"\s*(\(|CURRENT_(TIME|DATE|TIMESTAMP)\b)", re.IGNORECASE)
# How each server drops each kind of constraint; MySQL/MariaDB keep a unique constraint as an index.
_DROP = {
    "postgresql": dict.fromkeys(("CHECK", "UNIQUE", "FOREIGN"), "DROP CONSTRAINT"),
    "mysql": {"CHECK": "DROP CONSTRAINT", "UNIQUE": "DROP INDEX", "FOREIGN": "DROP FOREIGN KEY"},
}


def add_column(conn: Connection, table: str, column: Column[Any]) -> None:
    """Add ``column`` to ``table``; its constraints and indexes are added by separate calls.

    On SQLite a column ADD COLUMN cannot take (NOT NULL without a constant default) is added
    by a rebuild.

    Raises:
        ValueError: the column carries a key, unique, index or foreign key.
        Refused: its ``server_default`` is a ``text()`` in which SQLAlchemy took ``:name``
            for a parameter (it would be written as NULL).
    """
    if column.primary_key or column.unique or column.index or column.foreign_keys:
        raise ValueError(
            f"add column {column.name} without primary key, unique, index or foreign key, "
            "then add those with add_unique, add_foreign_key or CREATE INDEX"
        )
    default = column.server_default
    arg = default.arg if isinstance(default, DefaultClause) else None
    # No public accessor: the parameters text() found (":name") in the SQL it was given.
    if isinstance(arg, TextClause) and arg._bindparams:
        raise Refused(
            f"column {column.name}'s server_default text() holds "
            f"{', '.join(':' + n for n in arg._bindparams)}, which SQLAlchemy would replace "
            "with NULL; write it as '\\:' in text(), or pass a plain string"
        )
    definition = str(CreateColumn(column).compile(dialect=conn.dialect)).strip()
    if backend(conn) == "sqlite" and not _sqlite_can_add(conn, column):
        sqlite.rebuild(conn, table, lambda old: sqlite_rebuild.add_column(old, definition))
        return
    # SQLAlchemy doubles "%" in what it compiles for drivers with format placeholders
    # (psycopg, pymysql); sent with the driver's placeholder processing, it is undone.
    target = quote(conn, table)
    if backend(conn) != "sqlite":
        target = target.replace("%", "%%")
    conn.exec_driver_sql(f"ALTER TABLE {target} ADD COLUMN {definition}")


def drop_column(conn: Connection, table: str, name: str) -> None:
    """Drop column ``name`` with the indexes and key constraints over it, as PostgreSQL does.

    Raises:
        Refused (SQLite): a view, trigger, CHECK, generated column or another table's
            foreign key reads the column. PostgreSQL and MariaDB refuse those themselves.
    """
    kind = backend(conn)
    if kind == "sqlite":
        sqlite.drop_column(conn, table, name)
        return
    _refuse_if_read_elsewhere(conn, kind, table, name)
    changes = [f"DROP COLUMN {quote(conn, name)}"]
    if kind == "mysql":
        # MariaDB/MySQL would narrow an index instead, and refuse a column with a foreign key.
        inspector = inspect(conn)
        changes[:0] = [
            f"DROP FOREIGN KEY {quote(conn, str(key['name']))}"
            for key in inspector.get_foreign_keys(table)
            if name in key["constrained_columns"]
        ] + [
            f"DROP INDEX {quote(conn, str(index['name']))}"
            for index in inspector.get_indexes(table)
            if name in index["column_names"]
        ]
    _alter(conn, table, ", ".join(changes))


# Views and triggers that may read a column, as each server reports them: every view and every
# trigger, whichever table it is on (a trigger on another table may read or write this one).
# MariaDB lets a column a view or trigger reads be dropped (leaving them broken), and PostgreSQL
# does not see inside a trigger function; both are refused here, as on SQLite.
_READERS = {
    "mysql": (
        "SELECT 'view', TABLE_NAME, 0, VIEW_DEFINITION FROM information_schema.VIEWS"
        " WHERE TABLE_SCHEMA = DATABASE()"
        " UNION ALL SELECT 'trigger', TRIGGER_NAME, EVENT_OBJECT_TABLE = %(table)s,"
        " ACTION_STATEMENT FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE()"
    ),
    "postgresql": (
        "SELECT 'trigger', t.tgname, t.tgrelid = to_regclass(%(quoted)s), p.prosrc"
        " FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid WHERE NOT t.tgisinternal"
    ),
}


def _refuse_if_read_elsewhere(conn: Connection, kind: str, table: str, name: str) -> None:
    """Conservative: a view or trigger whose text names both the table (or that is on it) and
    the column, through any alias, is taken to read the column."""
    column, named = (
        re.compile(rf"(?<![\w$]){re.escape(word)}(?![\w$])", re.IGNORECASE)
        for word in (name, table)
    )
    readers = conn.exec_driver_sql(_READERS[kind], {"table": table, "quoted": quote(conn, table)})
    for what, reader, on_table, sql in readers:
        text = str(sql or "")
        if (on_table or named.search(text)) and column.search(text):
            raise Refused(
                f"column {name} of {table} is used by {what} {reader}; drop or change the "
                f"{what} first"
            )


def rename_column(conn: Connection, table: str, old: str, new: str) -> None:
    """Rename a column; its indexes and constraints follow, and on SQLite (3.25+) its views
    and triggers too, as PostgreSQL's views do.

    Raises:
        Refused: (PostgreSQL, MariaDB) a trigger reads the column, or (MariaDB) a view does:
            those would keep the old name and break.
    """
    kind = backend(conn)
    if kind != "sqlite":
        _refuse_if_read_elsewhere(conn, kind, table, old)
    _alter(conn, table, f"RENAME COLUMN {quote(conn, old)} TO {quote(conn, new)}")


def alter_column(
    conn: Connection,
    table: str,
    name: str,
    *,
    type_: TypeEngine[Any] | None = None,
    nullable: bool | None = None,
    server_default: str | Unchanged | None = UNCHANGED,
) -> None:
    """Change a column's type, nullability and/or database-side default (SQL text, None: none).

    Everything else about the column is kept as the database has it. Existing values must
    convert without change, or the migration fails: SQLite checks every row after the copy,
    PostgreSQL round-trips every value through the new type, MariaDB refuses what does not fit
    in strict mode.

    Raises:
        ValueError: nothing to change.
        Refused: a value would not convert unchanged, or (SQLite) the stored definition
            cannot be read with certainty.
    """
    if type_ is None and nullable is None and server_default is UNCHANGED:
        raise ValueError(f"alter_column({table}.{name}) was given nothing to change")
    type_sql = None if type_ is None else str(type_.compile(dialect=conn.dialect))
    kind = backend(conn)
    if kind == "sqlite":
        sqlite.rebuild(
            conn,
            table,
            lambda old: sqlite_rebuild.alter_column(
                old, name, type_sql=type_sql, nullable=nullable, default=server_default
            ),
        )
    elif kind == "postgresql":
        postgresql.alter_column(
            conn, table, name, type_sql=type_sql, nullable=nullable, default=server_default
        )
    else:
        mysql.alter_column(
            conn, table, name, type_sql=type_sql, nullable=nullable, default=server_default
        )


def add_check(conn: Connection, table: str, name: str, condition: str) -> None:
    """Add CHECK constraint ``name`` (``condition`` is SQL, sent as written); rows already
    breaking it fail the migration."""
    if backend(conn) == "sqlite":
        _add_sqlite_constraint(conn, table, f"CONSTRAINT {quote_name(name)} CHECK ({condition})")
        return
    _alter(conn, table, f"ADD CONSTRAINT {quote(conn, name)} CHECK ({condition})")


def drop_check(conn: Connection, table: str, name: str) -> None:
    """Drop CHECK constraint ``name``."""
    _drop_constraint(conn, table, "CHECK", name)


def add_unique(conn: Connection, table: str, name: str, columns: list[str]) -> None:
    """Add unique constraint ``name`` over ``columns``; existing duplicates fail the migration."""
    if backend(conn) == "sqlite":
        listed = ", ".join(map(quote_name, columns))
        _add_sqlite_constraint(conn, table, f"CONSTRAINT {quote_name(name)} UNIQUE ({listed})")
        return
    _alter(conn, table, f"ADD CONSTRAINT {quote(conn, name)} UNIQUE ({quote_all(conn, columns)})")


def drop_unique(conn: Connection, table: str, name: str) -> None:
    """Drop unique constraint ``name``."""
    _drop_constraint(conn, table, "UNIQUE", name)


def add_foreign_key(
    conn: Connection,
    table: str,
    name: str,
    columns: list[str],
    referred_table: str,
    referred_columns: list[str],
) -> None:
    """Add foreign key ``name``; a row pointing at no parent fails the migration."""
    if backend(conn) == "sqlite":
        own, theirs = (
            ", ".join(map(quote_name, columns)),
            ", ".join(map(quote_name, referred_columns)),
        )
        _add_sqlite_constraint(
            conn,
            table,
            f"CONSTRAINT {quote_name(name)} FOREIGN KEY ({own}) "
            f"REFERENCES {quote_name(referred_table)} ({theirs})",
        )
        return
    _alter(
        conn,
        table,
        f"ADD CONSTRAINT {quote(conn, name)} FOREIGN KEY ({quote_all(conn, columns)}) "
        f"REFERENCES {quote(conn, referred_table)} ({quote_all(conn, referred_columns)})",
    )


def drop_foreign_key(conn: Connection, table: str, name: str) -> None:
    """Drop foreign key ``name`` (MariaDB/MySQL keep the index they made for it)."""
    _drop_constraint(conn, table, "FOREIGN", name)


def _add_sqlite_constraint(conn: Connection, table: str, definition: str) -> None:
    sqlite.rebuild(conn, table, lambda old: sqlite_rebuild.add_constraint(old, definition))


def _drop_constraint(conn: Connection, table: str, kind: str, name: str) -> None:
    where = backend(conn)
    if where == "sqlite":
        sqlite.rebuild(conn, table, lambda old: sqlite_rebuild.drop_constraint(old, kind, name))
        return
    _alter(conn, table, f"{_DROP[where][kind]} {quote(conn, name)}")


def _sqlite_can_add(conn: Connection, column: Column[Any]) -> bool:
    """Whether SQLite's ADD COLUMN takes ``column``: NOT NULL needs a constant non-NULL default."""
    default = column.server_default
    if default is None:
        return bool(column.nullable)
    if not isinstance(default, DefaultClause):
        return False  # generated or database-computed: only a rebuild is sure to take it
    if isinstance(default.arg, str):
        return True  # SQLAlchemy writes it as a string literal
    sql = str(default.arg.compile(dialect=conn.dialect)).strip()
    if _SQLITE_NON_CONSTANT.match(sql):
        return False
    return bool(column.nullable) or sql.upper() != "NULL"


def _alter(conn: Connection, table: str, change: str) -> None:
    execute(conn, f"ALTER TABLE {quote(conn, table)} {change}")
