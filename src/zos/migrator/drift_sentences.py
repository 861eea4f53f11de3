"""Schema drift in words: one sentence per difference, naming the table, the column or
constraint, and what the database has against what the schema declares.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Column,
    DefaultClause,
    Dialect,
    ForeignKeyConstraint,
    Index,
    PrimaryKeyConstraint,
    Table,
    TextClause,
    UniqueConstraint,
)
from sqlalchemy.types import TypeEngine

from zos.migrator.drift_rules import actions, literal, type_text

EXTRA, MISSING = "is in the database but not in the schema", "is missing from the database"
_CONSTRAINTS = (ForeignKeyConstraint, UniqueConstraint, CheckConstraint, PrimaryKeyConstraint)


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
    sentences = action_sentences(wanted, actions(in_database), in_database)
    if sentences:
        return sentences
    if _deferral(in_database) != _deferral(wanted):
        return [
            f"table {owner(wanted)}: {_constraint(in_database, with_actions=False)} is"
            f" {_deferral(in_database)} in the database but {_deferral(wanted)} in the schema"
        ]
    return [
        f"table {owner(wanted)}: {_constraint(in_database)} {EXTRA},"
        f" where the schema has {_constraint(wanted)}"
    ]


def action_sentences(
    wanted: ForeignKeyConstraint,
    found: dict[str, str | None],
    in_database: ForeignKeyConstraint | None = None,
) -> list[str]:
    prefix = f"table {owner(wanted)}: {_constraint(in_database or wanted, with_actions=False)}"
    return [
        f"{prefix} has {found[what] or f'no {what} action'} in the database"
        f" but {declared or f'no {what} action'} in the schema"
        for what, declared in actions(wanted).items()
        if found[what] != declared
    ]


def describe(diff: tuple[Any, ...], dialect: Dialect) -> tuple[str | None, str]:
    """The table a diff belongs to (None if unknown) and one plain sentence for it."""
    extra, missing = EXTRA, MISSING
    match diff:
        case ("modify_index", Index() as in_database, Index() as wanted):
            return owner(wanted), (
                f"table {owner(wanted)}: index {wanted.name} is {_shape(in_database)} in the"
                f" database but {_shape(wanted)} in the schema"
            )
        case ("modify_constraint", UniqueConstraint() as in_database, UniqueConstraint() as wanted):
            return owner(wanted), (
                f"table {owner(wanted)}: unique constraint {wanted.name} is"
                f" {_shape(in_database)} in the database but {_shape(wanted)} in the schema"
            )
        case ("modify_fk", ForeignKeyConstraint() as in_database, ForeignKeyConstraint() as wanted):
            return owner(wanted), "\n".join(_foreign_key_sentences(in_database, wanted))
        case ("add_table", Table() as table):
            return table.name, f"table {table.name} {missing}"
        case ("remove_table", Table() as table):
            return table.name, f"table {table.name} {extra}"
        case ("add_column", _, str() as table, Column() as column):
            return table, f"table {table}: column {column.name} {missing}"
        case ("remove_column", _, str() as table, Column() as column):
            return table, f"table {table}: column {column.name} {extra}"
        case ("add_index", Index() as index):
            return owner(index), f"table {owner(index)}: {_index(index)} {missing}"
        case ("remove_index", Index() as index):
            return owner(index), f"table {owner(index)}: {_index(index)} {extra}"
        case ("add_fk" | "add_constraint", item) if isinstance(item, _CONSTRAINTS):
            return owner(item), f"table {owner(item)}: {_constraint(item)} {missing}"
        case ("remove_fk" | "remove_constraint", item) if isinstance(item, _CONSTRAINTS):
            return owner(item), f"table {owner(item)}: {_constraint(item)} {extra}"
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


def owner(
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
            described += f" {_deferral(item)}" if item.deferrable else ""
        return described
    if isinstance(item, CheckConstraint):
        return f"check constraint{name} ({item.sqltext})"
    kind = "unique constraint" if isinstance(item, UniqueConstraint) else "primary key"
    return f"{kind}{name} ({', '.join(column.name for column in item.columns)})"


def _deferral(fk: ForeignKeyConstraint) -> str:
    """When the key is checked: ``DEFERRABLE INITIALLY DEFERRED`` and the like (PostgreSQL)."""
    if not fk.deferrable:
        return "NOT DEFERRABLE"
    return f"DEFERRABLE INITIALLY {(fk.initially or 'IMMEDIATE').upper()}"


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
