"""SQLite table changes on a connection: reads the stored definitions, refuses what would break a
view, trigger or foreign key, and runs the rebuild that ``sqlite_rebuild`` plans, inside a
savepoint of the migration's transaction (never BEGIN, COMMIT or ROLLBACK)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection

from zos.migrator.ops import sqlite_rebuild as plan
from zos.migrator.ops.common import Refused, execute, quote
from zos.migrator.ops.sqlite_checks import check_reading
from zos.migrator.ops.sqlite_text import TableDefinition, parse_table
from zos.migrator.ops.sqlite_tokens import DefinitionUnreadable, mentions, same_name

_NATIVE_DROP_COLUMN = (3, 35)


def read_table(conn: Connection, table: str) -> TableDefinition:
    """The parsed stored definition of ``table``, found as SQLite finds it (ignoring ASCII case).

    Raises:
        LookupError: no such table.
        Refused: the definition cannot be read with certainty.
    """
    found = conn.exec_driver_sql(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name = ? COLLATE NOCASE",
        (table,),
    ).all()
    if not found:
        raise LookupError(f"there is no table {table}")
    name, sql = found[0]
    if str(name).lower().startswith("sqlite_"):
        raise Refused(f"table {name} belongs to SQLite and cannot be changed")
    try:
        definition = parse_table(str(sql))
    except DefinitionUnreadable as exc:
        raise Refused(
            f"table {name}'s stored definition cannot be read with certainty ({exc}); "
            "change it by hand"
        ) from exc
    rows = conn.exec_driver_sql(f"PRAGMA table_xinfo({quote(conn, str(name))})").all()
    check_reading(definition, [tuple(row) for row in rows])
    return definition


def _dependents(conn: Connection, table: str) -> list[plan.SchemaEntry]:
    rows = conn.exec_driver_sql(
        "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE tbl_name = ? COLLATE NOCASE"
        " AND type IN ('index', 'trigger') AND sql IS NOT NULL ORDER BY rowid",
        (table,),
    ).all()
    return [plan.SchemaEntry(*map(str, row)) for row in rows]


def _require_foreign_keys_off(conn: Connection, table: str) -> None:
    if conn.exec_driver_sql("PRAGMA foreign_keys").scalar():
        # With enforcement on, DROP TABLE deletes every row first, firing ON DELETE actions.
        raise RuntimeError(
            f"rebuilding table {table} needs SQLite foreign keys off; run it in a migration "
            "that zos db migrate applies in a transaction"
        )


def statements_for(
    conn: Connection,
    table: str,
    change: Callable[[TableDefinition], str],
    dropped_indexes: frozenset[str] = frozenset(),
) -> plan.Rebuild:
    """What a rebuild of ``table`` with ``change`` applied would run, without running it."""
    definition = read_table(conn, table)
    sequence = None
    if any(c.autoincrement for column in definition.columns for c in column.find("PRIMARY")):
        sequence = conn.exec_driver_sql(
            "SELECT seq FROM sqlite_sequence WHERE name = ?", (definition.name,)
        ).scalar()
    legacy = bool(conn.exec_driver_sql("PRAGMA legacy_alter_table").scalar())
    return plan.plan_rebuild(
        definition,
        change(definition),
        _dependents(conn, definition.name),
        dropped_indexes=dropped_indexes,
        sequence=None if sequence is None else int(sequence),
        legacy_alter_table=legacy,
    )


def rebuild(
    conn: Connection,
    table: str,
    change: Callable[[TableDefinition], str],
    dropped_indexes: frozenset[str] = frozenset(),
) -> None:
    """Rebuild ``table`` as ``change`` rewrites its CREATE TABLE, keeping rows and rowids.

    Raises:
        Refused: the definition is unreadable, or a value would not convert; nothing changed.
        RuntimeError: foreign-key enforcement is on (the runner turns it off).
    """
    _require_foreign_keys_off(conn, table)
    with conn.begin_nested():
        _run(conn, statements_for(conn, table, change, dropped_indexes))


def _run(conn: Connection, rebuild: plan.Rebuild) -> None:
    for sql in rebuild.before:
        execute(conn, sql)
    for check in rebuild.checks:
        failing = execute(conn, check.sql).scalar()
        if failing:
            raise Refused(f"{check.problem} ({failing} row(s))")
    for sql in rebuild.after:
        execute(conn, sql)


def drop_column(conn: Connection, table: str, name: str) -> None:
    """Drop column ``name``, and the indexes and key constraints over it, as PostgreSQL does.

    Raises:
        Refused: a view, trigger, CHECK, generated column or another table's foreign key
            uses the column; nothing changed.
    """
    definition = read_table(conn, table)
    column = definition.column(name)
    if column is None:
        raise LookupError(f"table {definition.name} has no column {name}")
    _refuse_if_read_elsewhere(conn, definition, column.name)
    indexes = [
        entry
        for entry in _dependents(conn, definition.name)
        if entry.type == "index" and plan.index_reads(entry.sql, column.name)
    ]
    new_sql = plan.drop_column(definition, column.name)  # refuses before anything runs
    keyed = any(column.find(kind) for kind in ("PRIMARY", "UNIQUE", "REFERENCES")) or any(
        any(same_name(used, column.name) for used in c.names) for c in definition.constraints
    )
    native = (conn.dialect.server_version_info or ()) >= _NATIVE_DROP_COLUMN
    dropped = frozenset(entry.name for entry in indexes)
    if keyed or not native:
        _require_foreign_keys_off(conn, table)
    with conn.begin_nested():
        if keyed or not native:
            _run(conn, statements_for(conn, table, lambda _: new_sql, dropped))
            return
        for entry in indexes:
            execute(conn, f"DROP INDEX {quote(conn, entry.name)}")
        execute(
            conn,
            f"ALTER TABLE {quote(conn, definition.name)} DROP COLUMN {quote(conn, column.name)}",
        )


def _refuse_if_read_elsewhere(conn: Connection, table: TableDefinition, column: str) -> None:
    """Refuse a drop that would leave a view or trigger reading a missing column, or another
    table's foreign key pointing at one (PostgreSQL refuses these too, without CASCADE)."""
    others = conn.exec_driver_sql(
        "SELECT type, name, tbl_name, sql FROM sqlite_master"
        " WHERE type IN ('view', 'trigger', 'table') AND sql IS NOT NULL"
    ).all()
    # A REFERENCES without a column list points at the parent's primary key.
    own = table.column(column)
    in_key = (own is not None and bool(own.find("PRIMARY"))) or any(
        c.kind == "PRIMARY" and any(same_name(used, column) for used in c.names)
        for c in table.constraints
    )
    for kind, name, on_table, sql in others:
        if kind == "table":
            if same_name(str(name), table.name):
                continue
            for key in conn.exec_driver_sql(f"PRAGMA foreign_key_list({quote(conn, str(name))})"):
                if same_name(str(key[2]), table.name) and (
                    same_name(str(key[4]), column) if key[4] is not None else in_key
                ):
                    raise Refused(
                        f"column {column} of {table.name} is referenced by a foreign key of "
                        f"table {name}; drop that first"
                    )
            continue
        reads_table = same_name(str(on_table), table.name) or mentions(str(sql), table.name)
        if reads_table and mentions(str(sql), column):
            raise Refused(
                f"column {column} of {table.name} is used by {kind} {name}; drop or change "
                f"the {kind} first"
            )
