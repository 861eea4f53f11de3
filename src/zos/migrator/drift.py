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
    Connection,
    ForeignKeyConstraint,
    Index,
    MetaData,
    UniqueConstraint,
)
from sqlalchemy.exc import SAWarning

from zos.migrator.drift_catalog import catalog_drift, sqlite_foreign_key_actions
from zos.migrator.drift_rules import defaults_differ, types_differ
from zos.migrator.drift_sentences import EXTRA, action_sentences, describe, owner

# sqlalchemy/dialects/sqlite/base.py, get_indexes(): SQLite's reflection skips these with a warning.
_SKIPPED_INDEX = re.compile(r"Skipped unsupported reflection of expression-based index (\S+)")
# Alembic's pairs of diffs that mean one changed item: the added kind and its removed kind.
_PAIRS = {"add_fk": "remove_fk", "add_index": "remove_index", "add_constraint": "remove_constraint"}


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
        for table, text in [describe(diff, conn.dialect)]
        for sentence in text.splitlines()
    ]
    described += [
        ("remove_index", table, f"table {table}: index {name} {EXTRA}")
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
            for sentence in action_sentences(fk, found)
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
        return (kind, owner(item), ",".join(item.column_keys), targets)
    if isinstance(item, Index | UniqueConstraint) and isinstance(item.name, str):
        return (kind, owner(item), item.name)
    return None


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
