"""Reads what a database has recorded, changing nothing and creating nothing.

A plain SQLite file is read with the standard library alone, and PostgreSQL through psycopg
alone (``zos.migrator.dialects.direct``): ``status`` and the start-up guard run at every deploy
and start, and SQLAlchemy's import is most of their cost. Other databases go through SQLAlchemy
and the recorder.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from zos.config import Settings
from zos.errors import ConfigError, DatabaseUnavailable
from zos.migrator.records import AppliedMigration, applied_from_row

_VERSIONS = "SELECT version, description, checksum, state, applied_at, duration_ms FROM {table}"


@dataclass(frozen=True)
class RecordedHistory:
    """The versions a database has recorded and its interrupted backfills."""

    database: str  # the URL, password masked
    applied: list[AppliedMigration]
    resumable: frozenset[int]
    running: str | None = None  # who holds the run lock now ("002 is running now, pid …")


def read_history(settings: Settings) -> RecordedHistory:
    """Everything the database has recorded; a missing SQLite file has recorded nothing.

    Raises:
        ConfigError: the database URL is invalid.
        DatabaseUnavailable: the database cannot be opened or read.
    """
    path = plain_sqlite_path(settings.database_url)
    if path is not None:
        return _read_sqlite(settings.database_url, path)
    from zos.migrator.dialects import direct
    from zos.urls import parse_url

    server = parse_url(settings.database_url)  # valid: plain_sqlite_path parsed it
    if direct.direct_read_possible(server):
        found = direct.read_postgresql(server, settings)
        return RecordedHistory(server.display, found.applied, found.resumable, found.running)
    from zos.database import connect, get_engine, resolve_target
    from zos.migrator import recorder
    from zos.migrator.dialects import dialect_for

    db = resolve_target(settings)
    if db.sqlite_path is not None and not db.sqlite_path.exists():
        return RecordedHistory(db.display, [], frozenset())
    engine = get_engine(settings, readonly=True)
    try:
        with connect(engine, db.display) as conn:
            applied = recorder.read_applied(conn)
            resumable = frozenset(recorder.read_cursors(conn))
            running = dialect_for(db).run_holder(conn)
            conn.rollback()
    finally:
        engine.dispose()
    return RecordedHistory(db.display, applied, resumable, running)


def plain_sqlite_path(url: str) -> Path | None:
    """The file of an SQLite URL with no options, as SQLAlchemy would open it, else None.

    Raises:
        ConfigError: the URL is not valid.
    """
    from zos.urls import InvalidUrl, parse_url

    try:
        parsed = parse_url(url)
    except InvalidUrl as error:
        raise ConfigError(f"database URL is not valid: {error}") from error
    return None if parsed.query else parsed.sqlite_path


def _read_sqlite(url: str, path: Path) -> RecordedHistory:
    from zos.urls import sqlite_folder_problem, sqlite_read_uri

    problem = sqlite_folder_problem(path)
    if problem:
        # The same verdict as migrate's (zos.database.resolve_target), not "version 0".
        raise ConfigError(problem)
    if not path.exists():
        return RecordedHistory(url, [], frozenset())

    uri = sqlite_read_uri(path)
    # A read-only file with a write-ahead log still in it cannot be read by this user.
    hint = "" if uri.endswith("mode=rw") else " (the file is read-only to this user)"
    try:
        conn = sqlite3.connect(uri, uri=True)
    except sqlite3.Error as error:
        raise DatabaseUnavailable(f"cannot connect to {url}: {error}{hint}") from error
    try:
        conn.execute("PRAGMA query_only = ON")
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        rows = (
            conn.execute(_VERSIONS.format(table="_schema_version") + " ORDER BY version")
            if "_schema_version" in tables
            else []
        )
        applied = [applied_from_row(*row) for row in rows]
        resumable = (
            frozenset(row[0] for row in conn.execute("SELECT version FROM _schema_backfill"))
            if "_schema_backfill" in tables
            else frozenset()
        )
    except sqlite3.Error as error:
        raise DatabaseUnavailable(f"database error on {url}: {error}{hint}") from error
    finally:
        conn.close()
    from zos.migrator.dialects.sqlite import probe_run_lock

    return RecordedHistory(url, applied, resumable, probe_run_lock(path))
