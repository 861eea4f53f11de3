"""The comparisons ``verify`` makes on a scratch database: rows kept, foreign keys satisfied,
the schema equal to metadata, and a planted failure leaving nothing behind."""

from __future__ import annotations

import ast
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, MetaData, event, inspect, text

from zos.errors import ZosError
from zos.migrator.dialects.scratch import sqlite_orphans
from zos.migrator.discovery import MigrationScript
from zos.migrator.verify_data import read_rows, reflect, type_text
from zos.migrator.verify_values import data_problems as data_problems

_PLANTED = "zos verify: planted failure right after the migration's last statement"
_DDL = ("CREATE", "ALTER", "DROP", "RENAME", "TRUNCATE")
# The name the planted copy gives the migration's own ``upgrade``: a statement sent while a
# function of that name is running is the migration's (its helpers' and ops' included).
_OWN_CODE = "_zos_verify_upgrade"
_ZOS_TABLES = ("_schema_version", "_schema_backfill", "_schema_lock")


def schema_of(conn: Connection) -> dict[str, Any]:
    """Everything reflection reports about each table but the internal ones, comparable."""
    inspector = inspect(conn)
    tables: dict[str, Any] = {}
    for name in sorted(n for n in inspector.get_table_names() if not n.startswith("_")):
        tables[name] = (
            [
                (
                    c["name"],
                    type_text(c["type"], conn.dialect),
                    c["nullable"],
                    str(c.get("default")),
                )
                for c in inspector.get_columns(name)
            ],
            inspector.get_pk_constraint(name)["constrained_columns"],
            sorted(
                (
                    str(fk["name"]),
                    tuple(fk["constrained_columns"]),
                    fk["referred_table"],
                    tuple(fk["referred_columns"]),
                )
                for fk in inspector.get_foreign_keys(name)
            ),
            sorted(
                (str(ix["name"]), tuple(str(c) for c in ix["column_names"]), bool(ix["unique"]))
                for ix in inspector.get_indexes(name)
            ),
            sorted(str(uq["name"]) for uq in inspector.get_unique_constraints(name)),
            sorted(
                (str(ck["name"]), " ".join(str(ck["sqltext"]).split()))
                for ck in inspector.get_check_constraints(name)
            ),
        )
    return tables


def schema_problems(conn: Connection, metadata: MetaData | None = None) -> list[str]:
    """``zos db check``'s drift sentences between the database and ``metadata`` (default:
    ``zos.database.metadata``)."""
    from zos.migrator.drift import find_drift

    if metadata is None:
        from zos.database import metadata as live

        metadata = live
    return find_drift(conn, metadata)


def foreign_key_problems(conn: Connection, where: str) -> list[str]:
    """Rows whose foreign key points at no row (SQLite: ``PRAGMA foreign_key_check``; every
    backend: an anti-join per foreign key, as the servers' constraints may be absent)."""
    problems: list[str] = []
    for table, rowid, parent in sqlite_orphans(conn):
        problems.append(f"{where}: table {table}: row {rowid} points at no row of {parent}")
    inspector = inspect(conn)
    quote = conn.dialect.identifier_preparer.quote
    for table in (n for n in inspector.get_table_names() if not n.startswith("_")):
        for fk in inspector.get_foreign_keys(table):
            pairs = list(zip(fk["constrained_columns"], fk["referred_columns"], strict=True))
            on = " AND ".join(f"c.{quote(a)} = p.{quote(b)}" for a, b in pairs)
            present = " AND ".join(f"c.{quote(a)} IS NOT NULL" for a, _ in pairs)
            orphans = conn.execute(
                text(
                    f"SELECT COUNT(*) FROM {quote(table)} c LEFT JOIN "
                    f"{quote(fk['referred_table'])} p ON {on} "
                    f"WHERE {present} AND p.{quote(pairs[0][1])} IS NULL"
                )
            ).scalar_one()
            if orphans:
                problems.append(
                    f"{where}: table {table}: {orphans} rows point at no row of "
                    f"{fk['referred_table']} ({', '.join(fk['constrained_columns'])})"
                )
    return sorted(set(problems))


def plant_failure(source: str) -> str | None:
    """``source`` with its ``upgrade`` made to raise right after it returns; None when the file
    has no top-level ``upgrade`` (a backfill)."""
    tree = ast.parse(source)
    found = False
    for statement in tree.body:
        if isinstance(statement, ast.FunctionDef) and statement.name == "upgrade":
            statement.name = _OWN_CODE
            found = True
    if not found:
        return None
    return (
        ast.unparse(tree)
        + f"\n\n\ndef upgrade(conn):\n    {_OWN_CODE}(conn)\n"
        + f"    raise RuntimeError({_PLANTED!r})\n"
    )


def atomic_problems(
    script: MigrationScript,
    planted: Path,
    *,
    connect: Callable[[], AbstractContextManager[Connection]],
    run: Callable[[], None],
    backend: str,
    transactional: bool,
) -> tuple[list[str], list[str]]:
    """Run ``script`` from ``planted`` made to fail after its last statement, and compare the
    schema and every row with before. Returns (problems, notes): a difference is a problem
    where the backend rolls DDL back, and a note where it cannot."""
    source = plant_failure(script.path.read_text(encoding="utf-8"))
    if source is None:
        return [], [f"{script.name}: not checked: a backfill commits batch by batch"]
    (planted / script.path.name).write_text(source, encoding="utf-8")
    with connect() as conn:
        before = _state(conn)
    with _statements() as sent:
        try:
            run()
        except ZosError as error:
            if _PLANTED not in str(error):
                return [f"{script.name}: failed before the planted failure: {error}"], []
        else:
            return [f"{script.name}: the planted failure did not stop the migration"], []
    with connect() as conn:
        after = _state(conn)
    if before == after:
        return [], []
    differences = sorted(t for t in set(before) | set(after) if before.get(t) != after.get(t))
    what = (
        f"{script.name}: not atomic: after a failure right after its last statement, tables "
        f"{', '.join(differences[:5])}{' …' if len(differences) > 5 else ''} differ from before"
    )
    if transactional:
        return [what], []
    ddl = sent.count("ddl")
    # Where each DDL statement commits on its own, one DDL statement with only row changes
    # after it is still all or nothing (the rows commit with the finishing mark); more DDL, or
    # row changes before the DDL, are not.
    if ddl <= 1 and "dml" not in sent[: sent.index("ddl") if "ddl" in sent else 0]:
        return [], []
    return [], [f"{what} ({backend} commits each of its {ddl} DDL statements on its own)"]


def _state(conn: Connection) -> dict[str, Any]:
    schema = schema_of(conn)
    metadata = reflect(conn)
    return {
        name: (schema[name], sorted(repr(sorted(r.items())) for r in read_rows(conn, table)))
        for name, table in metadata.tables.items()
    }


@contextmanager
def _statements() -> Iterator[list[str]]:
    """The kinds ("ddl", "dml") of the statements the migration's own code sends while
    inside: not zos's around it (its run lock, version tables, a dialect's preparation)."""
    kinds: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not _from_migration_code() or any(table in statement for table in _ZOS_TABLES):
            return  # zos's own, even when sent on the migration's behalf (a started mark)
        head = statement.lstrip().upper()
        if head.startswith(_DDL):
            kinds.append("ddl")
        elif head.startswith(("INSERT", "UPDATE", "DELETE")):
            kinds.append("dml")

    event.listen(Engine, "before_cursor_execute", seen)
    try:
        yield kinds
    finally:
        event.remove(Engine, "before_cursor_execute", seen)


def _from_migration_code() -> bool:
    """Whether the planted migration's own ``upgrade`` is on the calling thread's stack."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == _OWN_CODE:
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False
