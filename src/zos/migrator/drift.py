"""Schema drift: what differs between a live database and ``zos.schema``, one sentence each.

Reads the database through Alembic's autogenerate comparison; never changes it.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import (
    CheckConstraint,
    Column,
    Connection,
    DefaultClause,
    Dialect,
    ForeignKeyConstraint,
    Index,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    TextClause,
    UniqueConstraint,
)
from sqlalchemy.exc import SAWarning
from sqlalchemy.types import TypeEngine

from zos.migrator.drift_catalog import catalog_drift, sqlite_foreign_key_actions
from zos.migrator.drift_rules import actions, defaults_differ, literal, type_text, types_differ

_CONSTRAINTS = (ForeignKeyConstraint, UniqueConstraint, CheckConstraint, PrimaryKeyConstraint)
# sqlalchemy/dialects/sqlite/base.py, get_indexes(): SQLite's reflection skips these with a warning.
_SKIPPED_INDEX = re.compile(r"Skipped unsupported reflection of expression-based index (\S+)")
# Alembic's pairs of diffs that mean one changed item: the added kind and its removed kind.
_PAIRS = {"add_fk": "remove_fk", "add_index": "remove_index", "add_constraint": "remove_constraint"}
_EXTRA, _MISSING = "is in the database but not in the schema", "is missing from the database"


def find_drift(conn: Connection, metadata: MetaData) -> list[str]:
    """Every difference between the live schema on ``conn`` and ``metadata``, one sentence each.

    Compares tables, columns, types, nullability, server defaults, indexes, unique and foreign
    keys (their ON DELETE/ON UPDATE actions included) with Alembic, then CHECK constraints and
    collations from the catalog (``drift_catalog``), which Alembic does not compare.
    """
    context = MigrationContext.configure(
        conn,
        opts={
            "compare_type": types_differ,
            "compare_server_default": defaults_differ,
            "include_name": _include_name,
            "include_object": _include_object,
        },
    )
    with _expression_indexes(conn) as skipped:
        diffs = list(_flatten(compare_metadata(context, metadata)))
    described = [
        (diff[0], table, sentence)
        for diff in _paired(diffs)
        for table, text in [_describe(diff, conn.dialect)]
        for sentence in text.splitlines()
    ]
    described += [
        ("remove_index", table, f"table {table}: index {name} {_EXTRA}")
        for table, name in skipped
        if not _declares_index(metadata, name)
    ]
    # A table missing or extra as a whole is one sentence, not one more per index it holds.
    whole = {table for kind, table, _ in described if kind in ("add_table", "remove_table")}
    present = [
        table
        for table in metadata.sorted_tables
        if table.name not in whole and not _is_internal(table.name)
    ]
    return sorted(
        {
            sentence
            for kind, table, sentence in described
            if table not in whole or kind in ("add_table", "remove_table")
        }
        | set(catalog_drift(conn, present))
        | {
            sentence
            for table in present
            for fk, found in sqlite_foreign_key_actions(conn, table)
            for sentence in _action_sentences(fk, found)
        }
    )


@contextmanager
def _expression_indexes(conn: Connection) -> Iterator[list[tuple[str, str]]]:
    """Catch SQLAlchemy's warning for each expression index it cannot reflect (SQLite), and
    yield them as (table, index) to report instead; every other warning passes on unchanged.
    """
    skipped: list[tuple[str, str]] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield skipped
    for warning in caught:
        match = _SKIPPED_INDEX.fullmatch(str(warning.message))
        if match is not None and issubclass(warning.category, SAWarning):
            skipped.append((_sqlite_index_table(conn, match[1]), match[1]))
        else:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )


def _sqlite_index_table(conn: Connection, index: str) -> str:
    table = conn.exec_driver_sql(
        "SELECT tbl_name FROM sqlite_master WHERE type = 'index' AND name = ?", (index,)
    ).scalar()
    return str(table) if table is not None else "(unknown table)"


def _declares_index(metadata: MetaData, name: str) -> bool:
    return any(index.name == name for table in metadata.tables.values() for index in table.indexes)


def _paired(diffs: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The diffs, with each foreign key, index or unique constraint that Alembic reports as
    removed and added again (changed) turned into one ``modify_*`` diff: (kind, in the
    database, in the schema). Foreign keys pair by columns and target, the others by name.
    """
    removed = {_pair_key(diff): diff[1] for diff in diffs if diff[0] in _PAIRS.values()}
    matched = set()
    paired: list[tuple[Any, ...]] = []
    for diff in diffs:
        key = _pair_key(diff) if diff[0] in _PAIRS else None
        if key is not None and key in removed:
            matched.add(key)
            paired.append((f"modify_{diff[0].removeprefix('add_')}", removed[key], diff[1]))
        else:
            paired.append(diff)
    return [
        diff for diff in paired if not (diff[0] in _PAIRS.values() and _pair_key(diff) in matched)
    ]


def _pair_key(diff: tuple[Any, ...]) -> tuple[str, ...] | None:
    kind, item = diff[0].split("_", 1)[1], diff[1]
    if isinstance(item, ForeignKeyConstraint):
        targets = ",".join(element.target_fullname for element in item.elements)
        return (kind, _owner(item), ",".join(item.column_keys), targets)
    if isinstance(item, Index | UniqueConstraint) and isinstance(item.name, str):
        return (kind, _owner(item), item.name)
    return None


def _shape(item: Index | UniqueConstraint) -> str:
    """What an index or unique constraint covers, as in ``unique on (a, b)``."""
    if isinstance(item, Index):
        parts = [getattr(element, "name", None) or str(element) for element in item.expressions]
        unique = "unique " if item.unique else ""
    else:
        parts, unique = [column.name for column in item.columns], ""
    return f"{unique}on ({', '.join(parts)})"


def _foreign_key_sentences(
    in_database: ForeignKeyConstraint, wanted: ForeignKeyConstraint
) -> list[str]:
    sentences = _action_sentences(wanted, actions(in_database), in_database)
    if sentences:
        return sentences
    return [
        f"table {_owner(wanted)}: {_constraint(in_database)} {_EXTRA},"
        f" where the schema has {_constraint(wanted)}"
    ]


def _action_sentences(
    wanted: ForeignKeyConstraint,
    found: dict[str, str | None],
    in_database: ForeignKeyConstraint | None = None,
) -> list[str]:
    prefix = f"table {_owner(wanted)}: {_constraint(in_database or wanted, with_actions=False)}"
    return [
        f"{prefix} has {found[what] or f'no {what} action'} in the database"
        f" but {declared or f'no {what} action'} in the schema"
        for what, declared in actions(wanted).items()
        if found[what] != declared
    ]


def _is_internal(name: str | None) -> bool:
    # The runner's own bookkeeping (``_schema_version``) is not part of the schema.
    return name is not None and name.startswith("_")


def _include_name(name: str | None, type_: str, parent_names: dict[str, str | None]) -> bool:
    return not _is_internal(name)


def _include_object(
    item: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    return not _is_internal(name)


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
    extra, missing = _EXTRA, _MISSING
    match diff:
        case ("modify_index", Index() as in_database, Index() as wanted):
            return _owner(wanted), (
                f"table {_owner(wanted)}: index {wanted.name} is {_shape(in_database)} in the"
                f" database but {_shape(wanted)} in the schema"
            )
        case ("modify_constraint", UniqueConstraint() as in_database, UniqueConstraint() as wanted):
            return _owner(wanted), (
                f"table {_owner(wanted)}: unique constraint {wanted.name} is"
                f" {_shape(in_database)} in the database but {_shape(wanted)} in the schema"
            )
        case ("modify_fk", ForeignKeyConstraint() as in_database, ForeignKeyConstraint() as wanted):
            return _owner(wanted), "\n".join(_foreign_key_sentences(in_database, wanted))
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
                f"table {table}: column {column} has type {type_text(in_database, dialect)}"
                f" in the database but {type_text(wanted, dialect)} in the schema"
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
    *,
    with_actions: bool = True,
) -> str:
    name = f" {item.name}" if isinstance(item.name, str) else ""
    if isinstance(item, ForeignKeyConstraint):
        targets = [element.target_fullname.rsplit(".", 1) for element in item.elements]
        referred = targets[0][0] if targets else "(unknown table)"
        columns = ", ".join(target[-1] for target in targets)
        described = f"foreign key{name} ({', '.join(item.column_keys)}) -> {referred} ({columns})"
        if with_actions:
            described += "".join(f" {value}" for value in actions(item).values() if value)
        return described
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
        return type_text(value, dialect)
    if isinstance(value, DefaultClause):
        arg = value.arg
        if isinstance(arg, str):
            return literal(arg)
        return str(arg.text if isinstance(arg, TextClause) else arg.compile(dialect=dialect))
    return repr(value) if isinstance(value, str) else str(value)


def _generic(diff: tuple[Any, ...], dialect: Dialect) -> str:
    """A readable sentence for a diff kind this module has no wording for."""
    kind = str(diff[0]).replace("_", " ")
    parts: list[str] = []
    for part in diff[1:]:
        if part is None or isinstance(part, dict):
            continue
        if isinstance(part, TypeEngine):
            parts.append(type_text(part, dialect))
        else:
            parts.append(str(getattr(part, "name", part)))
    return f"{kind}: {', '.join(parts)}" if parts else kind
