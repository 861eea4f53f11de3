"""Schema changes for migrations: native ALTER TABLE where the database has it, otherwise
SQLite's documented table rebuild, always inside the migration's transaction. Never commits.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from enum import Enum
from typing import Any, Final, Literal

from sqlalchemy import (
    CheckConstraint,
    Column,
    Connection,
    ForeignKeyConstraint,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    UniqueConstraint,
    inspect,
    text,
)
from sqlalchemy.exc import SAWarning
from sqlalchemy.schema import ColumnCollectionConstraint, CreateColumn, CreateTable, DefaultClause
from sqlalchemy.types import TypeEngine

_SKIPPED_EXPRESSION_INDEX = "Skipped unsupported reflection of expression-based index"


class _Unchanged(Enum):
    UNCHANGED = "unchanged"


UNCHANGED: Final = _Unchanged.UNCHANGED
"""``alter_column(server_default=UNCHANGED)``: leave the column's default as it is."""

# SQLite's ADD COLUMN refuses a default that is not a constant: CURRENT_TIME/DATE/TIMESTAMP or
# an expression in parentheses.
_SQLITE_NON_CONSTANT = re.compile(r"\s*(\(|CURRENT_(TIME|DATE|TIMESTAMP)\b)", re.IGNORECASE)
_AUTOINCREMENT = re.compile(r"\bAUTOINCREMENT\b", re.IGNORECASE)
_SQLITE_DROP_COLUMN = (3, 35)
# How each server drops each kind of constraint; MySQL/MariaDB keep a unique constraint as an index.
_DROP: dict[str, dict[type[Any], str]] = {
    "postgresql": dict.fromkeys(
        (CheckConstraint, UniqueConstraint, ForeignKeyConstraint), "DROP CONSTRAINT"
    ),
    "mysql": {
        CheckConstraint: "DROP CONSTRAINT",
        UniqueConstraint: "DROP INDEX",
        ForeignKeyConstraint: "DROP FOREIGN KEY",
    },
}


def add_column(conn: Connection, table: str, column: Column[Any]) -> None:
    """Add ``column`` to ``table``; its constraints and indexes are added by separate calls."""
    if column.primary_key or column.unique or column.index or column.foreign_keys:
        raise ValueError(
            f"add column {column.name} without primary key, unique, index or foreign key, "
            "then add those with add_unique, add_foreign_key or CREATE INDEX"
        )
    if _backend(conn) == "sqlite" and not _sqlite_can_add(conn, column):
        # A copy joins the definition, so the caller's column stays free for another table.
        _rebuild(conn, table, lambda definition: definition.append_column(column._copy()))
        return
    _alter(conn, table, f"ADD COLUMN {CreateColumn(column).compile(dialect=conn.dialect)}")


def drop_column(conn: Connection, table: str, name: str) -> None:
    """Drop column ``name`` with the indexes and keys using it, as PostgreSQL does.

    A CHECK constraint naming the column must be dropped first (SQLite and MariaDB refuse).
    """
    backend = _backend(conn)
    changes = [f"DROP COLUMN {_quote(conn, name)}"]
    if backend == "sqlite":
        definition = _reflect(conn, table)
        native = (conn.dialect.server_version_info or ()) >= _SQLITE_DROP_COLUMN
        if not native or _is_constrained(definition, _column(definition, name)):
            _rebuild(conn, table, lambda definition: _remove_column(definition, name))
            return
    elif backend == "mysql":
        # MariaDB/MySQL would narrow an index instead, and refuse a column with a foreign key.
        inspector = inspect(conn)
        changes[:0] = [
            f"DROP FOREIGN KEY {_quote(conn, str(key['name']))}"
            for key in inspector.get_foreign_keys(table)
            if name in key["constrained_columns"]
        ] + [
            f"DROP INDEX {_quote(conn, str(index['name']))}"
            for index in inspector.get_indexes(table)
            if name in index["column_names"]
        ]
    _alter(conn, table, ", ".join(changes))


def rename_column(conn: Connection, table: str, old: str, new: str) -> None:
    """Rename a column; its indexes, constraints and triggers follow (SQLite 3.25+)."""
    _alter(conn, table, f"RENAME COLUMN {_quote(conn, old)} TO {_quote(conn, new)}")


def alter_column(
    conn: Connection,
    table: str,
    name: str,
    *,
    type_: TypeEngine[Any] | None = None,
    nullable: bool | None = None,
    server_default: str | Literal[_Unchanged.UNCHANGED] | None = UNCHANGED,
) -> None:
    """Change a column's type, nullability and/or database-side default (SQL text, None: none).

    Existing values are converted by the database; one that does not fit fails the migration.
    """
    if type_ is None and nullable is None and server_default is UNCHANGED:
        raise ValueError(f"alter_column({table}.{name}) was given nothing to change")
    backend = _backend(conn)
    if backend == "sqlite":

        def change(definition: Table) -> None:
            column = _column(definition, name)
            if type_ is not None:
                column.type = type_
            if nullable is not None:
                column.nullable = nullable
            if server_default is not UNCHANGED:
                column.server_default = _default_clause(server_default)

        _rebuild(conn, table, change)
    elif backend == "postgresql":
        changes = _postgresql_changes(conn, name, type_, nullable, server_default)
        _alter(conn, table, ", ".join(changes))
    else:
        # MODIFY restates the whole column, so whatever is not changing is read back first.
        current = next((c for c in inspect(conn).get_columns(table) if c["name"] == name), None)
        if current is None:
            raise LookupError(f"table {table} has no column {name}")
        default = current["default"] if server_default is UNCHANGED else server_default
        column: Column[Any] = Column(
            name,
            type_ if type_ is not None else current["type"],
            nullable=current["nullable"] if nullable is None else nullable,
            server_default=_default_clause(default),
            comment=current.get("comment"),
        )
        _alter(conn, table, f"MODIFY COLUMN {CreateColumn(column).compile(dialect=conn.dialect)}")


def add_check(conn: Connection, table: str, name: str, condition: str) -> None:
    """Add CHECK constraint ``name``; rows already breaking it fail the migration."""
    if _backend(conn) == "sqlite":
        constraint = CheckConstraint(condition, name=name)
        _rebuild(conn, table, lambda definition: definition.append_constraint(constraint))
        return
    _alter(conn, table, f"ADD CONSTRAINT {_quote(conn, name)} CHECK ({condition})")


def drop_check(conn: Connection, table: str, name: str) -> None:
    """Drop CHECK constraint ``name``."""
    _drop_constraint(conn, table, CheckConstraint, name)


def add_unique(conn: Connection, table: str, name: str, columns: list[str]) -> None:
    """Add unique constraint ``name`` over ``columns``; existing duplicates fail the migration."""
    if _backend(conn) == "sqlite":
        constraint = UniqueConstraint(*columns, name=name)
        _rebuild(conn, table, lambda definition: definition.append_constraint(constraint))
        return
    _alter(conn, table, f"ADD CONSTRAINT {_quote(conn, name)} UNIQUE ({_quote_all(conn, columns)})")


def drop_unique(conn: Connection, table: str, name: str) -> None:
    """Drop unique constraint ``name``."""
    _drop_constraint(conn, table, UniqueConstraint, name)


def add_foreign_key(
    conn: Connection,
    table: str,
    name: str,
    columns: list[str],
    referred_table: str,
    referred_columns: list[str],
) -> None:
    """Add foreign key ``name``; a row pointing at no parent fails the migration."""
    if _backend(conn) == "sqlite":

        def change(definition: Table) -> None:
            if referred_table not in definition.metadata.tables:
                # The new constraint's DDL names the parent's columns, so it must be known.
                _reflect(conn, referred_table, definition.metadata)
            targets = [f"{referred_table}.{column}" for column in referred_columns]
            definition.append_constraint(ForeignKeyConstraint(columns, targets, name=name))

        _rebuild(conn, table, change)
        return
    _alter(
        conn,
        table,
        f"ADD CONSTRAINT {_quote(conn, name)} FOREIGN KEY ({_quote_all(conn, columns)}) "
        f"REFERENCES {_quote(conn, referred_table)} ({_quote_all(conn, referred_columns)})",
    )


def drop_foreign_key(conn: Connection, table: str, name: str) -> None:
    """Drop foreign key ``name`` (MariaDB/MySQL keep the index they made for it)."""
    _drop_constraint(conn, table, ForeignKeyConstraint, name)


def _rebuild(conn: Connection, table: str, change: Callable[[Table], None]) -> None:
    """SQLite's 12-step schema change: create the changed table under another name, copy the
    rows by column name, drop the old table, rename the new one, then restore its indexes and
    triggers. The runner has turned foreign keys off and checks them before it commits."""
    if conn.exec_driver_sql("PRAGMA foreign_keys").scalar():
        # With enforcement on, DROP TABLE deletes every row first, firing ON DELETE actions.
        raise RuntimeError(
            f"rebuilding table {table} needs SQLite foreign keys off; run it in a migration "
            "that zos db migrate applies in a transaction"
        )
    created = conn.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).scalar()
    if created is not None and _AUTOINCREMENT.search(created):
        raise ValueError(f"table {table} uses AUTOINCREMENT, which a rebuild would not keep")
    definition = _reflect(conn, table)
    _restore_foreign_key_actions(conn, definition)
    old_columns = set(definition.columns.keys())
    old_indexes = {index.name for index in definition.indexes}
    change(definition)
    dropped_indexes = old_indexes - {index.name for index in definition.indexes}
    # Saved before DROP TABLE removes them; their SQL is re-run as written.
    extras = conn.exec_driver_sql(
        "SELECT name, sql FROM sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL"
        " AND type IN ('index', 'trigger') ORDER BY rowid",
        (table,),
    ).all()
    new, old = _quote(conn, f"_zos_rebuild_{table}"), _quote(conn, table)
    # Compiled under the table's own name so that a reference to itself keeps naming it: the
    # legacy rename below leaves such references as they are.
    ddl = str(CreateTable(definition).compile(dialect=conn.dialect)).strip()
    conn.exec_driver_sql(f"CREATE TABLE {new} {ddl.removeprefix(f'CREATE TABLE {old} ')}")
    copied = _quote_all(conn, [c.name for c in definition.columns if c.name in old_columns])
    conn.exec_driver_sql(f"INSERT INTO {new} ({copied}) SELECT {copied} FROM {old}")
    conn.exec_driver_sql(f"DROP TABLE {old}")
    # The modern rename re-checks every view and trigger, and one naming the table would fail
    # now that it is gone for a moment; the legacy rename leaves them alone.
    legacy = conn.exec_driver_sql("PRAGMA legacy_alter_table").scalar()
    conn.exec_driver_sql("PRAGMA legacy_alter_table = ON")
    try:
        conn.exec_driver_sql(f"ALTER TABLE {new} RENAME TO {old}")
    finally:
        conn.exec_driver_sql(f"PRAGMA legacy_alter_table = {'ON' if legacy else 'OFF'}")
    for name, sql in extras:
        if name not in dropped_indexes:
            conn.exec_driver_sql(sql)


def _restore_foreign_key_actions(conn: Connection, definition: Table) -> None:
    """Put back the ON DELETE/ON UPDATE actions that SQLAlchemy does not read from a
    column-level REFERENCES clause; SQLite's own foreign_key_list knows them."""
    listed: dict[int, tuple[str, list[str], str, str]] = {}
    for key, _, referred, column, _, on_update, on_delete, _ in conn.exec_driver_sql(
        f"PRAGMA foreign_key_list({_quote(conn, definition.name)})"
    ):
        listed.setdefault(key, (referred, [], on_update, on_delete))[1].append(column)
    for constraint in definition.foreign_key_constraints:
        for referred, columns, on_update, on_delete in listed.values():
            if (referred, columns) == (constraint.referred_table.name, constraint.column_keys):
                constraint.onupdate = constraint.onupdate or _action(on_update)
                constraint.ondelete = constraint.ondelete or _action(on_delete)


def _action(action: str) -> str | None:
    return None if action.upper() == "NO ACTION" else action


def _remove_column(definition: Table, name: str) -> None:
    column = _column(definition, name)
    for index in [i for i in definition.indexes if i.columns.contains_column(column)]:
        definition.indexes.discard(index)
    for constraint in list(definition.constraints):
        if isinstance(constraint, ColumnCollectionConstraint) and (
            constraint.columns.contains_column(column)
        ):
            definition.constraints.discard(constraint)
            if constraint is definition.primary_key:
                for key in constraint.columns:
                    key.primary_key = False
                definition.append_constraint(PrimaryKeyConstraint())
    # SQLAlchemy has no public way to take a column out of a Table.
    definition._columns.remove(column)


def _is_constrained(definition: Table, column: Column[Any]) -> bool:
    """Whether SQLite's own DROP COLUMN would refuse ``column`` for an index or key on it."""
    return (
        column.primary_key
        or any(index.columns.contains_column(column) for index in definition.indexes)
        or any(
            isinstance(constraint, ColumnCollectionConstraint)
            and constraint.columns.contains_column(column)
            for constraint in definition.constraints
        )
    )


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


def _postgresql_changes(
    conn: Connection,
    name: str,
    type_: TypeEngine[Any] | None,
    nullable: bool | None,
    server_default: str | Literal[_Unchanged.UNCHANGED] | None,
) -> list[str]:
    column = f"ALTER COLUMN {_quote(conn, name)}"
    changes = []
    if type_ is not None:
        declared = type_.compile(dialect=conn.dialect)
        changes.append(f"{column} TYPE {declared} USING {_quote(conn, name)}::{declared}")
    if nullable is not None:
        changes.append(f"{column} {'DROP' if nullable else 'SET'} NOT NULL")
    if server_default is None:
        changes.append(f"{column} DROP DEFAULT")
    elif server_default is not UNCHANGED:
        changes.append(f"{column} SET DEFAULT {server_default}")
    return changes


def _drop_constraint(conn: Connection, table: str, kind: type[Any], name: str) -> None:
    backend = _backend(conn)
    if backend != "sqlite":
        _alter(conn, table, f"{_DROP[backend][kind]} {_quote(conn, name)}")
        return

    def change(definition: Table) -> None:
        found = [c for c in definition.constraints if isinstance(c, kind) and c.name == name]
        if not found:
            raise LookupError(f"table {table} has no {kind.__name__} named {name}")
        definition.constraints.discard(found[0])

    _rebuild(conn, table, change)


def _default_clause(sql: str | None) -> DefaultClause | None:
    return None if sql is None else DefaultClause(text(sql))


def _reflect(conn: Connection, table: str, metadata: MetaData | None = None) -> Table:
    # SQLite's reflection skips expression indexes with an SAWarning. _rebuild re-runs every
    # index's stored SQL, so none is lost and the warning is noise on the operator's screen.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", _SKIPPED_EXPRESSION_INDEX, SAWarning)
        return Table(table, metadata if metadata is not None else MetaData(), autoload_with=conn)


def _column(definition: Table, name: str) -> Column[Any]:
    if name not in definition.columns:
        raise LookupError(f"table {definition.name} has no column {name}")
    return definition.columns[name]


def _alter(conn: Connection, table: str, change: str) -> None:
    # Sent as written: text() would read ":name" inside a condition as a bind parameter.
    conn.exec_driver_sql(f"ALTER TABLE {_quote(conn, table)} {change}")


def _backend(conn: Connection) -> str:
    name = conn.dialect.name
    if name in ("mysql", "mariadb"):
        return "mysql"
    if name not in ("sqlite", "postgresql"):
        raise NotImplementedError(f"zos.migrator.ops does not support {name}")
    return name


def _quote(conn: Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)


def _quote_all(conn: Connection, names: list[str]) -> str:
    return ", ".join(_quote(conn, name) for name in names)
