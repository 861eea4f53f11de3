"""What ``zos db verify`` needs to know of each database for its throwaway databases: the name
it reports a backend by, whether a migration there can be atomic, how a scratch database is
dropped, and the rows SQLite's own foreign-key check finds."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import text

if TYPE_CHECKING:
    from sqlalchemy import Connection

_MYSQL_FAMILY = ("mysql", "mariadb")


def report_name(backend: str) -> str:
    """The backend as ``verify`` reports it: "sqlite", "postgresql" or "mariadb" (MySQL too)."""
    return "mariadb" if backend in _MYSQL_FAMILY else backend


def ddl_rolls_back(backend: str) -> bool:
    """Whether a schema change rolls back with its transaction there (not MariaDB/MySQL, where
    DDL commits at once; MariaDB "Transactions: implicit commit")."""
    return backend not in _MYSQL_FAMILY


def drop_database_sql(backend: str, name: str) -> str:
    """``DROP DATABASE`` of the scratch database ``name`` (a generated identifier), ending
    other sessions still on it where the server can (PostgreSQL 13+ ``WITH (FORCE)``)."""
    force = " WITH (FORCE)" if backend == "postgresql" else ""
    return f"DROP DATABASE IF EXISTS {name}{force}"


def sqlite_orphans(conn: Connection) -> list[tuple[str, object, str]]:
    """Rows SQLite's ``PRAGMA foreign_key_check`` reports as (table, rowid, parent table);
    empty on the servers, whose constraints reject such rows when enforced."""
    if conn.dialect.name != "sqlite":
        return []
    return [(str(r[0]), r[1], str(r[2])) for r in conn.execute(text("PRAGMA foreign_key_check"))]
