"""Connection poolers in front of PostgreSQL (PgBouncer, Pgpool-II, Odyssey): how zos notices
one, and why migrations refuse to run through it.

A pooler in transaction mode hands each transaction another server session, so a session-level
advisory lock taken through it stays on whichever server session ran it: it no longer excludes
other runners, and its unlock may reach another session. The run lock therefore needs a
connection straight to the server (``database.migrate_url``); reads (``status``, ``history``,
``check``) work through a pooler, since zos prepares no statements on the server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zos.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy import Connection

POOLER_REFUSAL = (
    "{url} is a connection pooler, not the PostgreSQL server itself (the server session "
    "answering is not the one zos was given), and a migration run's lock needs a session of "
    "its own; set database.migrate_url to the server directly"
)


def behind_pooler(conn: Connection) -> bool:
    """Whether ``conn`` reaches PostgreSQL through a pooler.

    The server announces its backend's process id when a session starts (BackendKeyData, see
    "Message Flow" in the PostgreSQL protocol documentation); a pooler answers the client's
    start-up itself with a key of its own, so the id it announced differs from the process
    that runs the client's statements (``pg_backend_pid()``).
    """
    driver: Any = conn.connection.dbapi_connection
    announced = int(driver.info.backend_pid)
    actual = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    return actual != announced


def refuse_pooler(conn: Connection, url: str) -> None:
    """Raise ``ConfigError`` when ``conn`` goes through a pooler (see ``behind_pooler``).

    Raises:
        ConfigError: the connection reaches the server through a pooler.
    """
    if behind_pooler(conn):
        raise ConfigError(POOLER_REFUSAL.format(url=url))
