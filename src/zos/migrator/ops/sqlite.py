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
from zos.migrator.ops.sqlite_tokens import DefinitionUnreadable, mentions, quote_name, same_name

_NATIVE_DROP_COLUMN = (3, 35)


def read_table(conn: Connection, table: str) -> TableDefinition:
    """The parsed stored definition of ``table``, found as :func:`locate` finds it.

    Raises:
        LookupError: no such table.
        Refused: the definition cannot be read with certainty.
    """
    return locate(conn, table)[1]


def locate(conn: Connection, table: str) -> tuple[str, TableDefinition]:
    """The schema (``main``, ``temp`` or an attached one) holding ``table`` and its parsed
    stored definition, found as SQLite finds a name: ignoring ASCII case, temp first, then
    main, then attached databases; ``schema.table`` in that schema only
    (https://sqlite.org/lang_naming.html).

    Raises:
        LookupError: no such table.
        Refused: the definition cannot be read with certainty.
    """
    schemas = [str(row[1]) for row in conn.exec_driver_sql("PRAGMA database_list")]
    order = sorted(schemas, key=lambda schema: (schema != "temp", schema != "main"))
    candidates = [(schema, table) for schema in order]
    if "." in table:
        prefix, rest = table.split(".", 1)
        candidates += [(schema, rest) for schema in order if same_name(schema, prefix)]
    for schema, wanted in candidates:
        found = conn.exec_driver_sql(
            f"SELECT name, sql FROM {quote_name(schema)}.sqlite_master"
            " WHERE type = 'table' AND name = ? COLLATE NOCASE",
            (wanted,),
        ).all()
        if found:
            break
    else:
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
    rows = conn.exec_driver_sql(
        f"PRAGMA {quote_name(schema)}.table_xinfo({quote_name(str(name))})"
    ).all()
    check_reading(definition, [tuple(row) for row in rows])
    return schema, definition


def _dependents(conn: Connection, table: str, schema: str = "main") -> list[plan.SchemaEntry]:
    rows = conn.exec_driver_sql(
        f"SELECT type, name, tbl_name, sql FROM {quote_name(schema)}.sqlite_master"
        " WHERE tbl_name = ? COLLATE NOCASE"
        " AND type IN ('index', 'trigger') AND sql IS NOT NULL ORDER BY rowid",
        (table,),
    ).all()
    return [plan.SchemaEntry(*map(str, row)) for row in rows]


def _refuse_temp_triggers(conn: Connection, table: str) -> None:
    """A TEMP trigger on a table of another schema is stored without the TEMP word and dies
    with the table: re-created from its text it would become a permanent trigger."""
    found = conn.exec_driver_sql(
        "SELECT name FROM temp.sqlite_master WHERE type = 'trigger'"
        " AND tbl_name = ? COLLATE NOCASE",
        (table,),
    ).first()
    if found is not None:
        raise Refused(
            f"temporary trigger {found[0]} is on table {table}, which a rebuild would drop "
            "with it; drop the trigger first and create it again after the change"
        )


def _qualifier(conn: Connection, schema: str, table: str) -> str | None:
    """The schema to write before the names of a change to ``table``, or None where the bare
    name already finds it (main, with no temp table of that name to hide it)."""
    if schema != "main":
        return schema
    hidden = conn.exec_driver_sql(
        "SELECT 1 FROM temp.sqlite_master WHERE type = 'table' AND name = ? COLLATE NOCASE",
        (table,),
    ).first()
    return None if hidden is None else schema


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
    schema, definition = locate(conn, table)
    if schema != "temp":
        _refuse_temp_triggers(conn, definition.name)
    sequence = None
    if any(c.autoincrement for column in definition.columns for c in column.find("PRIMARY")):
        sequence = conn.exec_driver_sql(
            f"SELECT seq FROM {quote_name(schema)}.sqlite_sequence WHERE name = ?",
            (definition.name,),
        ).scalar()
    legacy = bool(conn.exec_driver_sql("PRAGMA legacy_alter_table").scalar())
    return plan.plan_rebuild(
        definition,
        change(definition),
        _dependents(conn, definition.name, schema),
        dropped_indexes=dropped_indexes,
        sequence=None if sequence is None else int(sequence),
        legacy_alter_table=legacy,
        schema=_qualifier(conn, schema, definition.name),
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
    schema, definition = locate(conn, table)
    column = definition.column(name)
    if column is None:
        raise LookupError(f"table {definition.name} has no column {name}")
    _refuse_if_read_elsewhere(conn, definition, column.name, schema)
    indexes = [
        entry
        for entry in _dependents(conn, definition.name, schema)
        if entry.type == "index" and plan.index_reads(entry.sql, column.name)
    ]
    new_sql = plan.drop_column(definition, column.name)  # refuses before anything runs
    keyed = any(column.find(kind) for kind in ("PRIMARY", "UNIQUE", "REFERENCES")) or any(
        any(same_name(used, column.name) for used in c.names) for c in definition.constraints
    )
    native = (conn.dialect.server_version_info or ()) >= _NATIVE_DROP_COLUMN
    dropped = frozenset(entry.name for entry in indexes)
    qualifier = _qualifier(conn, schema, definition.name)
    prefix = "" if qualifier is None else f"{quote_name(qualifier)}."
    if keyed or not native:
        _require_foreign_keys_off(conn, table)
    with conn.begin_nested():
        if keyed or not native:
            _run(conn, statements_for(conn, table, lambda _: new_sql, dropped))
            return
        for entry in indexes:
            execute(conn, f"DROP INDEX {prefix}{quote(conn, entry.name)}")
        execute(
            conn,
            f"ALTER TABLE {prefix}{quote(conn, definition.name)}"
            f" DROP COLUMN {quote(conn, column.name)}",
        )


def _refuse_if_read_elsewhere(
    conn: Connection, table: TableDefinition, column: str, schema: str = "main"
) -> None:
    """Refuse a drop that would leave a view or trigger reading a missing column, or another
    table's foreign key pointing at one (PostgreSQL refuses these too, without CASCADE).
    Views and triggers of the temp schema may read a table of any schema: they are read too;
    a foreign key only points within its own schema."""
    others = [
        (kind, name, on_table, sql, where)
        for where in dict.fromkeys((schema, "temp"))
        for kind, name, on_table, sql in conn.exec_driver_sql(
            f"SELECT type, name, tbl_name, sql FROM {quote_name(where)}.sqlite_master"
            " WHERE type IN ('view', 'trigger', 'table') AND sql IS NOT NULL"
        )
    ]
    # A REFERENCES without a column list points at the parent's primary key.
    own = table.column(column)
    in_key = (own is not None and bool(own.find("PRIMARY"))) or any(
        c.kind == "PRIMARY" and any(same_name(used, column) for used in c.names)
        for c in table.constraints
    )
    for kind, name, on_table, sql, where in others:
        if kind == "table":
            if where != schema or same_name(str(name), table.name):
                continue
            keys = f"PRAGMA {quote_name(where)}.foreign_key_list({quote_name(str(name))})"
            for key in conn.exec_driver_sql(keys):
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
