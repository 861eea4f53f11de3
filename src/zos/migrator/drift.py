"""Schema drift: what differs between a live database and ``zos.schema``, one sentence each.

Reads the database through Alembic's autogenerate comparison; never changes it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import (
    CheckConstraint,
    Column,
    Connection,
    Dialect,
    ForeignKeyConstraint,
    Index,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    UniqueConstraint,
    text,
)
from sqlalchemy.exc import CompileError
from sqlalchemy.types import TypeEngine

# MySQL/MariaDB only print a collation that differs from the table's, and the schema declares
# none, so it has no opinion on them (Alembic's own type comparison ignores them the same way).
_CHARSET_OR_COLLATION = re.compile(r"\s+(?:CHARACTER SET|COLLATE)\s+\S+")
# Display widths (INT(11)) change nothing stored; MariaDB reports them, SQLAlchemy omits them.
_INTEGER_DISPLAY_WIDTH = re.compile(r"^(TINYINT|SMALLINT|MEDIUMINT|INT|INTEGER|BIGINT)\(\d+\)")
_CONSTRAINTS = (ForeignKeyConstraint, UniqueConstraint, CheckConstraint, PrimaryKeyConstraint)


def find_drift(conn: Connection, metadata: MetaData) -> list[str]:
    """Every difference between the live schema on ``conn`` and ``metadata``, one sentence each."""
    context = MigrationContext.configure(
        conn,
        opts={
            "compare_type": _types_differ,
            "compare_server_default": False,
            "include_name": _include_name,
            "include_object": _include_object,
        },
    )
    described = [
        (diff[0], *_describe(diff, conn.dialect))
        for diff in _flatten(compare_metadata(context, metadata))
    ]
    # A table missing or extra as a whole is one sentence, not one more per index it holds.
    whole = {table for kind, table, _ in described if kind in ("add_table", "remove_table")}
    return sorted(
        {
            sentence
            for kind, table, sentence in described
            if table not in whole or kind in ("add_table", "remove_table")
        }
    )


def _is_internal(name: str | None) -> bool:
    # The runner's own bookkeeping (``_schema_version``) is not part of the schema.
    return name is not None and name.startswith("_")


def _include_name(name: str | None, type_: str, parent_names: dict[str, str | None]) -> bool:
    return not _is_internal(name)


def _include_object(
    item: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    return not _is_internal(name)


def _types_differ(
    context: MigrationContext,
    inspected_column: Column[Any],
    metadata_column: Column[Any],
    inspected_type: TypeEngine[Any],
    metadata_type: TypeEngine[Any],
) -> bool:
    # Returning a bool, never None, keeps Alembic's looser fallback comparison out of it.
    inspected = _type_text(inspected_type, context.dialect)
    expected = _type_text(metadata_type, context.dialect)
    if (inspected, expected) == ("LONGTEXT", "JSON"):
        return not _is_mariadb_json(context, inspected_column)
    return inspected != expected


def _type_text(type_: TypeEngine[Any], dialect: Dialect) -> str:
    """The type as ``dialect`` would declare it, less what reflection reports but never stores."""
    try:
        declared = type_.compile(dialect=dialect)
    except CompileError:
        return repr(type_)
    declared = " ".join(declared.upper().split())
    if _is_mysql(dialect):
        declared = _CHARSET_OR_COLLATION.sub("", declared)
        # MySQL has no boolean type: BOOL is an alias that MariaDB reports as TINYINT(1).
        if declared == "TINYINT(1)":
            return "BOOL"
        declared = _INTEGER_DISPLAY_WIDTH.sub(r"\1", declared)
    return declared


def _is_mariadb_json(context: MigrationContext, column: Column[Any]) -> bool:
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


def _is_mysql(dialect: Dialect) -> bool:
    return dialect.name in ("mysql", "mariadb")


def _flatten(diffs: Any) -> Iterator[tuple[Any, ...]]:
    # Column changes arrive as a nested list of ``modify_*`` tuples, one per changed aspect.
    for diff in diffs:
        if isinstance(diff, list):
            yield from _flatten(diff)
        elif isinstance(diff, tuple) and diff and isinstance(diff[0], str):
            yield diff
        else:
            yield ("unknown", diff)


def _describe(diff: tuple[Any, ...], dialect: Dialect) -> tuple[str | None, str]:
    """The table a diff belongs to (None if unknown) and one plain sentence for it."""
    extra, missing = "is in the database but not in the schema", "is missing from the database"
    match diff:
        case ("add_table", Table() as table):
            return table.name, f"table {table.name} {missing}"
        case ("remove_table", Table() as table):
            return table.name, f"table {table.name} {extra}"
        case ("add_column", _, str() as table, Column() as column):
            return table, f"table {table}: column {column.name} {missing}"
        case ("remove_column", _, str() as table, Column() as column):
            return table, f"table {table}: column {column.name} {extra}"
        case ("add_index", Index() as index):
            return _owner(index), f"table {_owner(index)}: {_index(index)} {missing}"
        case ("remove_index", Index() as index):
            return _owner(index), f"table {_owner(index)}: {_index(index)} {extra}"
        case ("add_fk" | "add_constraint", item) if isinstance(item, _CONSTRAINTS):
            return _owner(item), f"table {_owner(item)}: {_constraint(item)} {missing}"
        case ("remove_fk" | "remove_constraint", item) if isinstance(item, _CONSTRAINTS):
            return _owner(item), f"table {_owner(item)}: {_constraint(item)} {extra}"
        case ("modify_nullable", _, str() as table, str() as column, _, in_database, wanted):
            return table, (
                f"table {table}: column {column} is {_nullability(in_database)} in the database"
                f" but {_nullability(wanted)} in the schema"
            )
        case ("modify_type", _, str() as table, str() as column, _, in_database, wanted):
            return table, (
                f"table {table}: column {column} has type {_type_text(in_database, dialect)}"
                f" in the database but {_type_text(wanted, dialect)} in the schema"
            )
        case (str() as kind, _, str() as table, str() as column, dict(), in_database, wanted) if (
            kind.startswith("modify_")
        ):
            # modify_default, modify_comment, and whatever column aspect Alembic compares next.
            what = kind.removeprefix("modify_").replace("_", " ")
            return table, (
                f"table {table}: column {column} has {what} {_value(in_database, dialect)}"
                f" in the database but {_value(wanted, dialect)} in the schema"
            )
        case ("add_table_comment", Table() as table, in_database):
            return table.name, (
                f"table {table.name} has comment {_value(in_database, dialect)} in the database"
                f" but {_value(table.comment, dialect)} in the schema"
            )
        case ("remove_table_comment", Table() as table):
            return (
                table.name,
                f"table {table.name} has a comment in the database but none in the schema",
            )
    return None, _generic(diff, dialect)


def _owner(
    item: Index | ForeignKeyConstraint | UniqueConstraint | CheckConstraint | PrimaryKeyConstraint,
) -> str:
    table = item.table
    return table.name if isinstance(table, Table) else "(unknown table)"


def _index(index: Index) -> str:
    return f"{'unique index' if index.unique else 'index'} {index.name}"


def _constraint(
    item: ForeignKeyConstraint | UniqueConstraint | CheckConstraint | PrimaryKeyConstraint,
) -> str:
    name = f" {item.name}" if isinstance(item.name, str) else ""
    if isinstance(item, ForeignKeyConstraint):
        targets = [element.target_fullname.rsplit(".", 1) for element in item.elements]
        referred = targets[0][0] if targets else "(unknown table)"
        columns = ", ".join(target[-1] for target in targets)
        return f"foreign key{name} ({', '.join(item.column_keys)}) -> {referred} ({columns})"
    if isinstance(item, CheckConstraint):
        return f"check constraint{name} ({item.sqltext})"
    kind = "unique constraint" if isinstance(item, UniqueConstraint) else "primary key"
    return f"{kind}{name} ({', '.join(column.name for column in item.columns)})"


def _nullability(nullable: object) -> str:
    return "NOT NULL" if nullable is False else "nullable"


def _value(value: object, dialect: Dialect) -> str:
    if value is None:
        return "none"
    if isinstance(value, TypeEngine):
        return _type_text(value, dialect)
    return repr(value) if isinstance(value, str) else str(value)


def _generic(diff: tuple[Any, ...], dialect: Dialect) -> str:
    """A readable sentence for a diff kind this module has no wording for."""
    kind = str(diff[0]).replace("_", " ")
    parts: list[str] = []
    for part in diff[1:]:
        if part is None or isinstance(part, dict):
            continue
        if isinstance(part, TypeEngine):
            parts.append(_type_text(part, dialect))
        else:
            parts.append(str(getattr(part, "name", part)))
    return f"{kind}: {', '.join(parts)}" if parts else kind
