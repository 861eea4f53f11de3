"""Engines from settings: SQLite pragmas on every connection, URLs without passwords, and
"cannot connect" turned into ``DatabaseUnavailable``. Also exposes ``metadata``, the live schema.
"""

from __future__ import annotations

import importlib
import math
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, exc
from sqlalchemy.engine import URL

from zos.config import Settings
from zos.errors import ConfigError, DatabaseUnavailable
from zos.urls import InvalidUrl, mask_url, parse_url, sqlite_folder_problem, sqlite_read_uri

if TYPE_CHECKING:
    from sqlalchemy import MetaData

    metadata: MetaData

__all__ = [
    "DatabaseTarget",
    "connect",
    "get_engine",
    "mask_url",
    "metadata",
    "resolve_target",
]

# Execution option that makes an SQLite transaction take the write lock at BEGIN.
SQLITE_BEGIN_IMMEDIATE = "zos_sqlite_begin_immediate"
# Execution option that leaves an SQLite connection without BEGIN, each statement on its own.
SQLITE_AUTOCOMMIT = "zos_sqlite_autocommit"

# What a driver (or SQLAlchemy converting for it) raises for a URL query option it cannot take:
# an unknown charset (AttributeError in PyMySQL), a missing ssl_ca file (OSError), a value of
# the wrong type (ValueError, TypeError, ArgumentError), an unknown encoding (LookupError), an
# option PyMySQL declares but lacks (NotImplementedError: compress, named_pipe).
_OPTION_REFUSALS = (
    exc.ArgumentError,
    NotImplementedError,
    ValueError,
    TypeError,
    AttributeError,
    OSError,
    LookupError,
)

_DRIVER_EXTRAS = {"postgresql": "postgresql", "mysql": "mysql", "mariadb": "mysql"}
# Each driver's name for the bound on connecting (database.connect_timeout_seconds).
_CONNECT_TIMEOUT_ARGS = {
    "psycopg": "connect_timeout",
    "psycopg2": "connect_timeout",
    "pg8000": "timeout",
    "pymysql": "connect_timeout",
    "mysqldb": "connect_timeout",
    "mysqlconnector": "connection_timeout",
    "mariadbconnector": "connect_timeout",
}
# libpq takes a connect_timeout below 2 as 2; the other drivers take whole seconds from 1.
_MIN_CONNECT_TIMEOUT = {"psycopg": 2, "psycopg2": 2}


@dataclass(frozen=True)
class DatabaseTarget:
    """A parsed database URL and what zos needs to know about it before connecting."""

    url: URL
    display: str
    backend: str  # "sqlite", "postgresql" or "mysql"
    sqlite_path: Path | None  # None for other backends and in-memory SQLite

    @property
    def transactional_ddl(self) -> bool:
        """Whether a schema change can be rolled back together with the version record."""
        return self.backend != "mysql"


def __getattr__(name: str) -> Any:
    # The live schema is imported on first use only: the migration runner never needs it, and
    # building 18 tables is a measurable part of a `zos db status` that should start fast.
    if name == "metadata":
        from zos.schema import metadata

        return metadata
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def resolve_target(
    settings: Settings, url: str | None = None, *, migrate: bool = False
) -> DatabaseTarget:
    """Parse the database URL in force (or ``url``) with ``zos.urls.parse_url``.

    ``migrate`` picks ``database.migrate_url`` when it is set: the URL of the commands that
    change the schema (migrate, dry-run, repair). The SQLAlchemy URL is built from the parsed
    parts, so SQLAlchemy and the standard-library read path agree on the file or server, and
    the display never shows a password.

    Raises:
        ConfigError: the URL cannot be parsed or names an unsupported database or driver, or
            an SQLite file's folder is a file.
    """
    raw = url or (settings.database.migrate_url if migrate else None) or settings.database_url
    try:
        parsed = parse_url(raw)
    except InvalidUrl as error:
        raise ConfigError(f"database URL is not valid: {error}") from error
    problem = parsed.sqlite_path and sqlite_folder_problem(parsed.sqlite_path)
    if problem:
        raise ConfigError(problem)
    query: dict[str, list[str]] = {}
    for key, value in parsed.query:
        query.setdefault(key, []).append(value)
    sa_url = URL.create(
        parsed.scheme,
        username=parsed.username,
        password=parsed.password,
        host=parsed.host,
        port=parsed.port,
        database=parsed.database,
        query={
            key: values[0] if len(values) == 1 else tuple(values) for key, values in query.items()
        },
    )
    return DatabaseTarget(sa_url, parsed.display, parsed.backend, parsed.sqlite_path)


def get_engine(
    settings: Settings, *, readonly: bool = False, url: str | None = None, migrate: bool = False
) -> Engine:
    """An engine for the configured database; nothing is opened until first use.

    A writable SQLite engine creates the default data directory when it is missing, and runs
    every connection in WAL mode with foreign keys on and a busy timeout. A ``readonly`` SQLite
    engine changes nothing in the file, not even its journal mode. ``url`` replaces the
    configured URL (for a rehearsal copy); ``migrate`` picks ``database.migrate_url`` as
    ``resolve_target`` does.

    Raises:
        ConfigError: the URL is invalid, its driver is not installed, or the driver refuses
            one of its query options.
        DatabaseUnavailable: the SQLite file's directory does not exist or cannot be made.
    """
    target = resolve_target(settings, url, migrate=migrate)
    if target.backend == "sqlite":
        return _sqlite_engine(target, settings, readonly=readonly)
    connect_args: dict[str, Any] = {}
    if target.backend == "mysql" and "charset" not in target.url.query:
        connect_args["charset"] = "utf8mb4"
    _check_pymysql_charset(target)
    password = target.url.password
    if target.url.get_driver_name() == "pymysql" and password and not password.isascii():
        # PyMySQL encodes a text password as Latin-1 and fails on anything else; a password set
        # from a UTF-8 client is stored as its UTF-8 bytes, so send those.
        connect_args["password"] = password.encode("utf-8")
    driver = target.url.get_driver_name()
    bound = settings.database.connect_timeout_seconds
    timeout_arg = _CONNECT_TIMEOUT_ARGS.get(driver)
    if timeout_arg:
        # Given here, it replaces the URL's value (SQLAlchemy lets connect_args win).
        seconds = _smaller_bound(bound, target.url.query.get(timeout_arg))
        connect_args[timeout_arg] = max(_MIN_CONNECT_TIMEOUT.get(driver, 1), seconds)
    if driver == "psycopg" and "prepare_threshold" not in target.url.query:
        # No server-side prepared statements: a transaction pooler (PgBouncer) hands each
        # transaction another server connection, where "_pg3_0" does not exist.
        connect_args["prepare_threshold"] = None
    answer_bound = driver == "pymysql"
    if answer_bound:
        # PyMySQL's connect_timeout bounds the TCP connect only; a server that accepts and never
        # sends its greeting would hang the handshake, so reads are bounded until it is done,
        # then bounded by the URL's read_timeout again, if it gives one.
        url_reads = target.url.query.get("read_timeout")
        connect_args["read_timeout"] = max(1, _smaller_bound(bound, url_reads))
    schema = settings.database.schema
    options: dict[str, Any]
    server_url, options = target.url, {}
    if schema is not None:
        # Every statement on a Table names the schema (PostgreSQL) or database (MariaDB), so
        # zos's own tables are found there whatever the session's search path says.
        options["schema_translate_map"] = {None: schema}
        if target.backend == "mysql":
            server_url = server_url.set(database=schema)
    try:
        engine = create_engine(
            server_url, pool_pre_ping=True, connect_args=connect_args, execution_options=options
        )
    except (exc.NoSuchModuleError, ModuleNotFoundError) as error:
        extra = _DRIVER_EXTRAS.get(target.url.get_backend_name(), "postgresql")
        raise ConfigError(
            f"the driver for {target.display} is not installed; install it with "
            f"pip install 'zos[{extra}]'"
        ) from error
    except _OPTION_REFUSALS as error:
        # SQLAlchemy converts the query options for the driver here (create_connect_args).
        if not target.url.query:
            raise
        raise _option_refused(target.display, error) from error
    if answer_bound:
        event.listen(engine, "connect", _reads_bounded_by(_url_seconds(url_reads)))
    if schema is not None and target.backend == "postgresql":
        event.listen(engine, "connect", _search_path(schema))
    return engine


def _search_path(schema: str) -> Callable[[Any, Any], None]:
    """Make ``schema`` the only schema on a new session's search path (pg_catalog stays
    implicit), so a migration's unqualified names create and find objects there and never in
    ``public``. ``schema`` is a plain name (checked by zos.config), safe to quote."""

    def set_path(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute(f'SET search_path TO "{schema}"')
        cursor.close()
        dbapi_conn.commit()

    return set_path


def _reads_bounded_by(seconds: int | None) -> Callable[[Any, Any], None]:
    """After the handshake, a statement may take as long as it takes (a migration's ALTER on a
    large table), or as long as the URL's ``read_timeout`` allows: replace the read bound
    PyMySQL was given for connecting. PyMySQL applies ``_read_timeout`` before each read; it
    has no public setter (PyMySQL 1.1, connections.py)."""

    def after_handshake(dbapi_conn: Any, _record: Any) -> None:
        if hasattr(dbapi_conn, "_read_timeout"):
            dbapi_conn._read_timeout = seconds

    return after_handshake


def _url_seconds(value: object) -> int | None:
    """A URL's whole-second timeout option; None when absent, or 0 or less (no bound)."""
    if not isinstance(value, str):
        return None  # absent (zos.urls refuses a repeated option)
    try:
        seconds = int(value.strip())
    except ValueError:
        return None  # zos.urls accepts whole numbers only; the driver says what else is wrong
    return seconds if seconds > 0 else None


def _smaller_bound(configured: float, url_value: object) -> int:
    """Whole seconds to wait for a server: the smaller of ``database.connect_timeout_seconds``
    and the URL's own option. A URL option of 0 means "no bound" to the drivers; it cannot
    lift the configured one, so that nothing waits without a bound."""
    seconds = math.ceil(configured)
    from_url = _url_seconds(url_value)
    return seconds if from_url is None else min(seconds, from_url)


@contextmanager
def connect(engine: Engine, display: str | None = None) -> Iterator[Connection]:
    """Open a connection; a driver error, on connect or later, becomes a ``ZosError``.

    Raises:
        DatabaseUnavailable: the server cannot be reached or refuses the login, the file cannot
            be opened, or the database fails a statement zos itself issues (not a migration's).
        ConfigError: the driver refuses an option given in the URL's query.
    """
    display = display or mask_url(engine.url.render_as_string(hide_password=True))
    conn = open_connection(engine, display)
    try:
        with conn:
            yield conn
    except exc.DBAPIError as error:
        raise DatabaseUnavailable(
            f"database error on {display}: {first_line(error.orig)}"
        ) from error


def open_connection(engine: Engine, display: str | None = None) -> Connection:
    """``engine.connect()``, with the driver's refusal turned into a ``ZosError``.

    Raises:
        DatabaseUnavailable: the server cannot be reached or refuses the login.
        ConfigError: the driver refuses an option given in the URL's query.
    """
    display = display or mask_url(engine.url.render_as_string(hide_password=True))
    try:
        return engine.connect()
    except exc.DBAPIError as error:
        raise DatabaseUnavailable(
            f"cannot connect to {display}: {first_line(error.orig)}"
        ) from error
    except _OPTION_REFUSALS as error:
        # The URL's query options reach the driver as keyword arguments, unchecked by
        # SQLAlchemy: an option the driver lacks, or a value it cannot take, fails here. With
        # no options, such an error is a bug in zos and keeps its traceback.
        if not engine.url.query:
            raise
        raise _option_refused(display, error) from error


def _check_pymysql_charset(target: DatabaseTarget) -> None:
    """PyMySQL fails an unknown ``charset`` with an AttributeError deep in connect; say what
    is wrong instead.

    Raises:
        ConfigError: PyMySQL knows no character set of that name.
    """
    charset = target.url.query.get("charset")
    if target.url.get_driver_name() != "pymysql" or not isinstance(charset, str):
        return
    try:
        # Looked up by name: PyMySQL ships no type stubs.
        charsets: Any = importlib.import_module("pymysql.charset")
    except ImportError:
        return  # create_engine says the driver is not installed
    if charsets.charset_by_name(charset) is None:
        raise ConfigError(
            f"cannot connect to {target.display}: URL option 'charset': PyMySQL knows no "
            f"character set {charset!r} (e.g. utf8mb4)"
        )


def _option_refused(display: str, error: BaseException) -> ConfigError:
    return ConfigError(
        f"cannot connect to {display}: the driver refused an option of the URL: {first_line(error)}"
    )


def first_line(error: BaseException | None) -> str:
    """The first line of a driver's message, with any password masked."""
    text = str(error).strip() if error is not None else ""
    return mask_url(text.splitlines()[0]) if text else type(error).__name__


def set_foreign_keys(conn: Connection, enabled: bool) -> None:
    """Turn SQLite's foreign-key enforcement on or off for ``conn``.

    SQLite ignores this pragma inside a transaction, so it is sent straight to the driver,
    outside SQLAlchemy's transaction handling; call it only between transactions.
    """
    if conn.in_transaction():
        raise RuntimeError("foreign-key enforcement can only change between transactions")
    sqlite_pragma(conn, f"foreign_keys = {'ON' if enabled else 'OFF'}")


def sqlite_pragma(conn: Connection, pragma: str) -> None:
    """Send ``PRAGMA <pragma>`` straight to the driver, outside SQLAlchemy's transactions."""
    dbapi_conn = conn.connection.dbapi_connection
    assert dbapi_conn is not None
    dbapi_conn.execute(f"PRAGMA {pragma}")


def _sqlite_engine(target: DatabaseTarget, settings: Settings, *, readonly: bool) -> Engine:
    path = target.sqlite_path
    busy_ms = int(settings.database.busy_timeout_seconds * 1000)
    if readonly and path is not None:
        # Never creates a missing file, and query_only forbids writes; see sqlite_read_uri.
        uri = sqlite_read_uri(path)

        def creator() -> sqlite3.Connection:
            return sqlite3.connect(uri, uri=True, check_same_thread=False)

        engine = create_engine("sqlite://", creator=creator)
    else:
        if path is not None:
            _ensure_directory(path, settings)
            _ensure_writable(path)
        engine = create_engine(target.url)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy: pysqlite would otherwise commit before DDL,
        # splitting a migration from its version record.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
        # SQLite resets this for every new connection, so every pooled one must set it.
        cursor.execute("PRAGMA foreign_keys = ON")
        if readonly:
            cursor.execute("PRAGMA query_only = ON")
        elif path is not None:
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        if options.get(SQLITE_AUTOCOMMIT):
            return
        conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get(SQLITE_BEGIN_IMMEDIATE) else "BEGIN")

    return engine


def _ensure_writable(path: Path) -> None:
    # Checked before anything runs: SQLite would otherwise fail the first migration with
    # "attempt to write a readonly database", after a backup and with a misleading culprit.
    if path.exists() and not os.access(path, os.W_OK):
        raise DatabaseUnavailable(
            f"cannot write to SQLite database {path}: the file is read-only to this user"
        )
    if not os.access(path.parent, os.W_OK):
        raise DatabaseUnavailable(
            f"cannot write to SQLite database {path}: its folder {path.parent} is read-only to "
            "this user (SQLite writes its -wal and -shm files there)"
        )


def _ensure_directory(path: Path, settings: Settings) -> None:
    directory = path.parent
    if directory.is_dir():
        return
    if directory.resolve() == settings.data_dir.resolve():
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            # e.g. a file where a parent folder should be, or no permission to create it.
            raise DatabaseUnavailable(
                f"cannot create the data directory {directory}: {error.strerror or error}"
            ) from error
        return
    raise DatabaseUnavailable(
        f"cannot open SQLite database {path}: directory {directory} does not exist"
    )
