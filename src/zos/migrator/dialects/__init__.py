"""The database-specific layer of the runner: one module per kind of database behind the
``Dialect`` protocol of ``base``. No other module of the runner branches on the database."""

from __future__ import annotations

from typing import TYPE_CHECKING

from zos.migrator.dialects.base import Dialect, RunLock, Watch, acquire

if TYPE_CHECKING:
    from zos.database import DatabaseTarget

__all__ = ["Dialect", "RunLock", "Watch", "acquire", "dialect_for"]


def dialect_for(target: DatabaseTarget) -> Dialect:
    """The dialect of ``target``'s database (its module is imported here, on first use)."""
    if target.backend == "sqlite":
        from zos.migrator.dialects.sqlite import SqliteDialect

        return SqliteDialect(target.sqlite_path)
    from zos.migrator.dialects.servers import MySQLDialect, PostgresDialect

    return PostgresDialect() if target.backend == "postgresql" else MySQLDialect()
