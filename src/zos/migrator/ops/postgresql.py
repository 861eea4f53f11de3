"""PostgreSQL ``ALTER COLUMN``: a type change that never loses data. Every existing value must
come back unchanged from a round trip through the new type first; ``USING`` (an explicit cast,
which may truncate) is written only where no assignment cast exists, after that proof."""

from __future__ import annotations

import re

from sqlalchemy import Connection, exc

from zos.migrator.ops.common import UNCHANGED, Refused, Unchanged, execute, quote

_COLLATE = re.compile(r"\s+COLLATE\s+", re.IGNORECASE)


def alter_column(
    conn: Connection,
    table: str,
    name: str,
    *,
    type_sql: str | None,
    nullable: bool | None,
    default: str | Unchanged | None,
) -> None:
    """ALTER COLUMN ``name``: type, NOT NULL and default in one statement.

    Raises:
        Refused: a value would change in the new type (rounded, truncated, reformatted).
    """
    column = quote(conn, name)
    target = f"ALTER COLUMN {column}"
    changes = []
    # A collation is part of the column, not of the type a CAST takes.
    cast_type = None if type_sql is None else _COLLATE.split(type_sql, maxsplit=1)[0]
    if type_sql is not None and cast_type is not None:
        _refuse_lossy_conversion(conn, table, name, cast_type)
        if not isinstance(default, Unchanged):
            # The old default may not cast to the new type; it is being replaced anyway.
            changes.append(f"{target} DROP DEFAULT")
        changes.append(f"{target} TYPE {type_sql}")
    if nullable is not None:
        changes.append(f"{target} {'DROP' if nullable else 'SET'} NOT NULL")
    if default is None:
        if type_sql is None:
            changes.append(f"{target} DROP DEFAULT")
    elif default is not UNCHANGED:
        changes.append(f"{target} SET DEFAULT {default}")
    statement = f"ALTER TABLE {quote(conn, table)} {', '.join(changes)}"
    if type_sql is None:
        execute(conn, statement)
        return
    try:
        with conn.begin_nested():
            execute(conn, statement)
    except exc.ProgrammingError as error:
        _refuse_unconvertible_default(name, type_sql, error)
        if "cannot be cast automatically" not in str(error):
            raise
        # No assignment cast exists (text to integer, say). The round trip above proved that
        # the explicit cast changes no value, so it may be written out.
        using = f"{target} TYPE {type_sql} USING CAST({column} AS {cast_type})"
        try:
            with conn.begin_nested():
                execute(conn, statement.replace(f"{target} TYPE {type_sql}", using, 1))
        except exc.ProgrammingError as again:
            _refuse_unconvertible_default(name, type_sql, again)
            raise


def _refuse_unconvertible_default(name: str, type_sql: str, error: exc.ProgrammingError) -> None:
    if "default for column" in str(error):
        raise Refused(
            f"column {name}'s default cannot be converted to {type_sql}; "
            "give alter_column a server_default for the new type too"
        ) from error


def _refuse_lossy_conversion(conn: Connection, table: str, name: str, type_sql: str) -> None:
    """Count the values that a cast to ``type_sql`` and back would change; compared in the old
    type where it has equality, otherwise, and always for a JSON target, in the new one."""
    column, where = quote(conn, name), quote(conn, table)
    old_type = conn.exec_driver_sql(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
        " WHERE attrelid = to_regclass(%(table)s) AND attname = %(column)s AND NOT attisdropped",
        {"table": where, "column": name},
    ).scalar()
    if old_type is None:
        raise LookupError(f"table {table} has no column {name}")
    there_and_back = f"CAST(CAST({column} AS {type_sql}) AS {old_type})"
    queries = [
        f"SELECT count(*) FROM {where} WHERE {column} IS NOT NULL"
        f" AND {there_and_back} IS DISTINCT FROM {column}",
        f"SELECT count(*) FROM {where} WHERE {column} IS NOT NULL"
        f" AND CAST({there_and_back} AS {type_sql}) IS DISTINCT FROM CAST({column} AS {type_sql})",
    ]
    if type_sql.strip().upper() in ("JSON", "JSONB"):
        # jsonb stores a document, not its text (whitespace, key order): what must survive is
        # the JSON value, so the comparison is jsonb equality. Text that is no JSON fails the
        # cast itself.
        queries = queries[1:]
    for query in queries:
        try:
            with conn.begin_nested():
                changed = execute(conn, query).scalar()
        except exc.ProgrammingError as error:
            if "operator does not exist" in str(error) and query is queries[0] and queries[1:]:
                continue  # no equality in the old type: compare in the new one
            raise
        if changed:
            raise Refused(
                f"column {name}: {changed} value(s) would change when converted to {type_sql}"
            )
        return
