"""The one parser of database URLs, and the one rule that keeps passwords out of every message.

Standard library only: the SQLite read path of ``status`` and the start-up guard imports it
without SQLAlchemy, and ``zos.database`` builds SQLAlchemy URLs from what it returns, so both
read the same URL as the same file or server.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import quote, unquote

__all__ = [
    "DatabaseUrl",
    "InvalidUrl",
    "mask_url",
    "parse_url",
    "sqlite_folder_problem",
    "sqlite_read_uri",
    "sqlite_url",
]

Backend = Literal["sqlite", "postgresql", "mysql"]

# Synchronous DBAPI drivers SQLAlchemy knows for each backend; zos runs no event loop, so the
# asyncio drivers (aiosqlite, asyncpg, psycopg_async, aiomysql, asyncmy) cannot work.
_DRIVERS: dict[str, tuple[Backend, frozenset[str]]] = {
    "sqlite": ("sqlite", frozenset({"", "pysqlite"})),
    "postgresql": ("postgresql", frozenset({"", "psycopg", "psycopg2", "pg8000"})),
    "mysql": ("mysql", frozenset({"", "pymysql", "mysqldb", "mysqlconnector", "mariadbconnector"})),
    "mariadb": (
        "mysql",
        frozenset({"", "pymysql", "mysqldb", "mysqlconnector", "mariadbconnector"}),
    ),
}
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9]*)(?:\+([A-Za-z0-9_]+))?:")
# What follows the user information of a server URL: [host or [IPv6]][:port]/database.
_SERVER_TAIL = re.compile(r"(?:\[[0-9A-Fa-f:.%\w]+\]|[\w.%-]+)(?::\d+)?/[^/?@]")
# Query keys whose values are masked: libpq's password/sslpassword, and anything like them.
_SECRET_KEY = re.compile(r"pass|pwd|secret|token|key|auth|cred", re.IGNORECASE)
# In free text: everything between "scheme:[//]user:" and the last "@" of the same word, and the
# value of a secret-looking query key.
_USERINFO_IN_TEXT = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*:/*[^\s:/@]*:)\S*@")
_QUERY_SECRET_IN_TEXT = re.compile(
    r"([?&;][^=\s&]*(?:pass|pwd|secret|token|key|auth|cred)[^=\s&]*=)[^&\s]*", re.IGNORECASE
)
# Passwords seen by ``parse_url`` in this process: ``mask_url`` hides them wherever they appear,
# even in a driver's message that quotes them outside any URL.
_SECRETS: set[str] = set()
_MIN_SECRET = 4  # shorter strings would mask ordinary words in messages
MAX_PORT = 65535

# URL query options whose values SQLAlchemy converts before the driver sees them; a value it
# cannot convert would end in a traceback, so it is checked here, once, for every command.
# Booleans are read as SQLAlchemy's ``util.asbool`` reads them.
_TRUE = frozenset({"true", "yes", "on", "y", "t", "1"})
_FALSE = frozenset({"false", "no", "off", "n", "f", "0"})
# What SQLAlchemy's pysqlite dialect hands to sqlite3.connect() (pysqlite.create_connect_args).
# isolation_level is left out: zos takes over BEGIN itself (see zos.database).
_SQLITE_OPTIONS = {
    "uri": "bool",
    "timeout": "seconds",
    "check_same_thread": "bool",
    "cached_statements": "count",
    "detect_types": "count",
}
# SQLite URI parameters (https://sqlite.org/uri.html) zos can honour on every path: the others
# (vfs, immutable, nolock, psow, modeof, mode=memory) change which file is read or how safely.
_SQLITE_URI_OPTIONS = {
    "mode": frozenset({"ro", "rw", "rwc"}),
    "cache": frozenset({"shared", "private"}),
}
# Server options converted by SQLAlchemy (mysqldb.create_connect_args) or, for port, duplicating
# a part of the URL (PostgreSQL's multihost parser requires integers).
_SERVER_OPTIONS = {
    "port": "port",
    "connect_timeout": "count",
    "read_timeout": "count",
    "write_timeout": "count",
    "client_flag": "count",
    "compress": "bool",
    "local_infile": "bool",
    "use_unicode": "bool",
    "ssl_check_hostname": "bool",
}


class InvalidUrl(ValueError):
    """A database URL zos cannot use; the message names the problem and never quotes the URL."""


@dataclass(frozen=True)
class DatabaseUrl:
    """A database URL split into its parts; ``display`` is the URL with the password masked.

    ``database`` and ``username``/``password`` are percent-decoded; for SQLite ``database`` is the
    file's path (None for an in-memory database).
    """

    backend: Backend
    scheme: str  # "postgresql+psycopg", as written
    driver: str  # "" when the URL names none
    username: str | None
    password: str | None = field(repr=False)
    host: str | None  # an IPv6 address without its brackets
    port: int | None
    database: str | None
    query: tuple[tuple[str, str], ...]
    display: str

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite file this URL names; None for another backend or an in-memory database.

        With ``uri=true`` the database is a ``file:`` URI and this is the file it names, the one
        sqlite3 opens, so the standard-library read path opens that same file.
        """
        if self.backend != "sqlite" or self.database in (None, "", ":memory:"):
            return None
        if _sqlite_uri(self.query):
            return Path(_uri_file(self.database))
        return Path(self.database)


def parse_url(raw: str) -> DatabaseUrl:
    """Split ``raw`` into its parts, reading it as an operator most likely meant it.

    The user information runs to the *last* ``@``, so an unencoded ``@`` (or ``/``, ``:``, ``?``)
    in a password stays in the password. Servers need ``//host`` and a database name; SQLite takes
    ``sqlite:///relative/path``, ``sqlite:////absolute/path`` or ``sqlite://`` (in memory).

    Raises:
        InvalidUrl: the URL has no known scheme or driver, lacks ``//``, has a bad port or IPv6
            bracket, or a server URL names no database. The message never quotes the URL.
    """
    text = raw.strip()
    match = _SCHEME.match(text)
    if match is None:
        raise InvalidUrl("it does not start with a scheme such as sqlite:// or postgresql://")
    name, driver = match.group(1).lower(), (match.group(2) or "").lower()
    if name not in _DRIVERS:
        raise InvalidUrl(
            f"unsupported database '{name}' (use sqlite, postgresql, or mysql/mariadb)"
        )
    backend, drivers = _DRIVERS[name]
    if driver not in drivers:
        known = ", ".join(sorted(d for d in drivers if d))
        raise InvalidUrl(
            f"unsupported driver '{driver}' for {name} (zos needs a synchronous driver: {known})"
        )
    rest = text[match.end() :]
    if not rest.startswith("//"):
        raise InvalidUrl(f"'{match.group(0)}' must be followed by '//' ({name}://…)")
    rest = rest[2:]
    if backend == "sqlite":
        return _sqlite(match.group(0), backend, driver, rest)
    return _server(match.group(0), backend, driver, rest)


def sqlite_url(path: Path | str) -> str:
    """The ``sqlite:///`` URL of ``path``, escaped so that ``parse_url`` gives ``path`` back."""
    # parse_url decodes the path and ends it at "?", so only those two need escaping.
    return "sqlite:///" + str(path).replace("%", "%25").replace("?", "%3F")


def sqlite_folder_problem(path: Path) -> str | None:
    """Why the folder of the SQLite file ``path`` cannot hold it, or None when it can (or does
    not exist yet: a writer creates the data directory)."""
    # The nearest folder that exists must be a folder: "afile/sub/zos.db" can never be made.
    for folder in (path.parent, *path.parent.parents):
        if folder.exists():
            if folder.is_dir():
                return None
            return f"cannot use SQLite database {path}: {folder} is a file, not a folder"
    return None


def sqlite_read_uri(path: Path) -> str:
    """The ``file:`` URI that opens an existing SQLite file for reading without changing it.

    ``mode=rw`` never creates a file, and lets the last reader remove the ``-wal`` and ``-shm``
    files it needed. When this user cannot write the file (or the folder where ``-shm`` must be
    created), SQLite cannot read a WAL database that way ("attempt to write a readonly database",
    "unable to open database file"); with no ``-wal`` content, no write can be in flight, so the
    file is read as ``immutable`` (https://sqlite.org/uri.html#uriimmutable).
    """
    uri = path.resolve().as_uri()
    shm = path.with_name(path.name + "-shm")
    can_write = os.access(path, os.W_OK) and (
        os.access(shm, os.W_OK) if shm.exists() else os.access(path.parent, os.W_OK)
    )
    if can_write:
        return f"{uri}?mode=rw"
    wal = path.with_name(path.name + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        return f"{uri}?mode=ro"
    return f"{uri}?mode=ro&immutable=1"


def mask_url(text: str) -> str:
    """``text`` with every password hidden: in any URL-like word, and any password parsed so far.

    Used for every message that may quote a URL or a driver's error.
    """
    for secret in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(secret, "***")
    text = _USERINFO_IN_TEXT.sub(r"\1***@", text)
    return _QUERY_SECRET_IN_TEXT.sub(r"\1***", text)


def _sqlite(scheme: str, backend: Backend, driver: str, rest: str) -> DatabaseUrl:
    path, query = _split_query(rest)
    if path == "":
        database = None
    elif path.startswith("/"):
        database = unquote(path[1:]) or None
    else:
        # "sqlite://host/..." or "sqlite://user:pw@/...": SQLite has neither.
        raise InvalidUrl(
            "an SQLite URL has no host or user: write sqlite:///relative/path or "
            "sqlite:////absolute/path"
        )
    if database is not None and "\x00" in database:
        raise InvalidUrl("the SQLite path contains a NUL character")
    _check_sqlite_query(database, query)
    display = f"{scheme}//{path}{_display_query(query)}"
    return DatabaseUrl(
        backend, scheme[:-1], driver, None, None, None, None, database, query, display
    )


def _server(scheme: str, backend: Backend, driver: str, rest: str) -> DatabaseUrl:
    username = password = None
    userinfo, rest = _split_userinfo(rest)
    if userinfo is not None:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        if colon:
            password = unquote(secret)
            _remember(secret, password)
    rest, query = _split_query(rest)
    hostport, slash, database = rest.partition("/")
    host, port = _host_port(hostport)
    # SQLAlchemy reads libpq's multihost form, host=A&host=B (and port=, the same way).
    _check_repeats(query, frozenset({"host", "port"}) if backend == "postgresql" else frozenset())
    _check_options(query, _SERVER_OPTIONS, backend)
    database = unquote(database) if slash else ""
    if not database:
        raise InvalidUrl(f"a {backend} URL must name its database: …/DATABASE_NAME")
    user_part = ""
    if username is not None or password is not None:
        user_part = quote(username or "", safe="")
        user_part += ":***@" if password is not None else "@"
    where = f"[{host}]" if host and ":" in host else host or ""
    where += f":{port}" if port is not None else ""
    display = f"{scheme}//{user_part}{where}/{quote(database, safe='')}{_display_query(query)}"
    return DatabaseUrl(
        backend, scheme[:-1], driver, username, password, host, port, database, query, display
    )


def _check_sqlite_query(database: str | None, query: tuple[tuple[str, str], ...]) -> None:
    """Refuse an option SQLAlchemy would ignore with a warning, or that would make the read
    path and the write path open different files.

    Raises:
        InvalidUrl: an unknown option, a bad value, or ``uri=true`` without a ``file:`` name.
    """
    _check_repeats(query, frozenset())
    uri = _sqlite_uri(query)
    for key, value in query:
        if key in _SQLITE_OPTIONS:
            continue
        if uri and key in _SQLITE_URI_OPTIONS:
            if value not in _SQLITE_URI_OPTIONS[key]:
                allowed = ", ".join(sorted(_SQLITE_URI_OPTIONS[key]))
                raise InvalidUrl(f"SQLite URL option {key}={value!r}: zos accepts {allowed}")
            continue
        names = ", ".join(
            [*_SQLITE_OPTIONS, *(f"{name} (with uri=true)" for name in _SQLITE_URI_OPTIONS)]
        )
        raise InvalidUrl(f"unknown SQLite URL option '{key}' (zos accepts {names})")
    _check_options(query, _SQLITE_OPTIONS, "SQLite")
    if uri and not (database or "").startswith("file:"):
        raise InvalidUrl(
            "with uri=true the SQLite database must be a file: URI (sqlite:///file:path?uri=true)"
        )
    if uri and not _uri_file(database or ""):
        raise InvalidUrl("the file: URI names no file")


def _check_repeats(query: tuple[tuple[str, str], ...], repeatable: frozenset[str]) -> None:
    """Refuse an option given twice: SQLAlchemy would pass both values on as a tuple, which
    the driver cannot take.

    Raises:
        InvalidUrl: naming the option.
    """
    keys = [key for key, _ in query if key not in repeatable]
    twice = sorted({key for key in keys if keys.count(key) > 1})
    if twice:
        raise InvalidUrl(f"URL option '{twice[0]}' is given more than once")


def _check_options(query: tuple[tuple[str, str], ...], kinds: dict[str, str], name: str) -> None:
    """Each value of an option in ``kinds`` is one SQLAlchemy or the driver can convert.

    Raises:
        InvalidUrl: naming the option and what it takes (its value may be a secret: not shown).
    """
    for key, value in query:
        kind = kinds.get(key)
        if kind is None or _fits(kind, value):
            continue
        wanted = {
            "bool": "true or false",
            "count": "a whole number",
            "seconds": "a number of seconds",
            "port": f"a number from 1 to {MAX_PORT}",
        }[kind]
        raise InvalidUrl(f"{name} URL option '{key}' must be {wanted}")


def _fits(kind: str, value: str) -> bool:
    text = value.strip()
    if kind == "bool":
        return text.lower() in _TRUE | _FALSE
    if kind == "seconds":
        try:
            return math.isfinite(float(text)) and float(text) >= 0
        except ValueError:
            return False
    if not text.isascii() or not text.isdigit():
        return False
    return kind != "port" or 1 <= int(text) <= MAX_PORT


def _sqlite_uri(query: tuple[tuple[str, str], ...]) -> bool:
    # The last value wins, as in SQLAlchemy's coerce_kw_type of a repeated key.
    values = [value for key, value in query if key == "uri"]
    return bool(values) and values[-1].strip().lower() in _TRUE


def _uri_file(database: str) -> str:
    """The file named by the ``file:`` URI ``database``, as SQLite reads it."""
    rest = database[len("file:") :]
    if rest.startswith("//"):
        # file://localhost/abs or file:///abs: SQLite takes only an empty or "localhost" host.
        host, _, path = rest[2:].partition("/")
        if host not in ("", "localhost"):
            raise InvalidUrl("a file: URI may name no host other than localhost")
        rest = "/" + path
    return unquote(rest.partition("#")[0])


def _split_userinfo(text: str) -> tuple[str | None, str]:
    """Split at the ``@`` that ends the user information.

    An unencoded ``@`` may sit in a password (``zos:p@ss@host/db``) or in a query value
    (``zos@host/db?password=p@ss``): the split is at the one ``@`` after which
    ``host[:port]/database`` follows. Where several do, the URL is refused rather than guessed,
    since a wrong guess would show part of the password as a host or database name.

    Raises:
        InvalidUrl: more than one ``@`` could end the user information.
    """
    positions = [index for index, char in enumerate(text) if char == "@"]
    fitting = [index for index in positions if _SERVER_TAIL.match(text, index + 1)]
    if len(fitting) > 1:
        raise InvalidUrl(
            "it can be read more than one way because of an '@' in the password or the query; "
            "write '@' there as %40"
        )
    split = fitting[0] if fitting else positions[-1] if positions else None
    if split is None:
        return None, text
    return text[:split], text[split + 1 :]


def _host_port(text: str) -> tuple[str | None, int | None]:
    if text.startswith("["):
        end = text.find("]")
        if end == -1:
            raise InvalidUrl("the IPv6 address has no closing ']'")
        host, after = text[1:end], text[end + 1 :]
        if not host or not re.fullmatch(r"[0-9A-Fa-f:.%\w]+", host):
            raise InvalidUrl("the IPv6 address in brackets is not valid")
        if after and not after.startswith(":"):
            raise InvalidUrl("only ':PORT' may follow the IPv6 address in brackets")
        port_text = after[1:] if after else None
    else:
        if "[" in text or "]" in text:
            raise InvalidUrl("a bracket in the host: write an IPv6 address as [ADDRESS]")
        host, colon, port_text_ = text.partition(":")
        port_text = port_text_ if colon else None
    if port_text is None:
        return host or None, None
    if not port_text.isascii() or not port_text.isdigit() or not 1 <= int(port_text) <= MAX_PORT:
        raise InvalidUrl(f"the port must be a number from 1 to {MAX_PORT}")
    return host or None, int(port_text)


def _split_query(text: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    path, mark, raw_query = text.partition("?")
    return path, _parse_query(raw_query) if mark else ()


def _parse_query(text: str) -> tuple[tuple[str, str], ...]:
    # Not parse_qsl: a "+" in a password means "+", not a space, and a piece without "=" is
    # the rest of the previous value, cut at an unencoded "&" ("password=a&b").
    pairs: list[list[str]] = []
    for piece in text.split("&"):
        key, equals, value = piece.partition("=")
        if pairs and not equals and piece:
            pairs[-1][1] += "&" + piece
        elif piece:
            pairs.append([key, value])
    decoded = tuple((unquote(key), unquote(value)) for key, value in pairs)
    for (key, value), (_, raw) in zip(decoded, pairs, strict=True):
        if _SECRET_KEY.search(key):
            _remember(raw, value)
    return decoded


def _display_query(query: tuple[tuple[str, str], ...]) -> str:
    shown: list[str] = []
    for key, value in query:
        if _SECRET_KEY.search(key):
            # What follows a secret may be more of it, cut at an unencoded "&"; show none of it.
            more = len(shown) + 1 < len(query)
            shown.append(f"{quote(key, safe='')}=***" + ("&***" if more else ""))
            break
        shown.append(f"{quote(key, safe='')}={quote(value, safe='')}")
    return "?" + "&".join(shown) if shown else ""


def _remember(*secrets: str) -> None:
    for secret in secrets:
        if len(secret) >= _MIN_SECRET:
            _SECRETS.add(secret)
            _SECRETS.add(quote(secret, safe=""))
