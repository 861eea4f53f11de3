"""Settings: defaults, overlaid by ``config.yaml``, overlaid by ``ZOS_*`` environment variables.

Every failure here becomes one ``ConfigError`` naming the source (file or variable) and the key.
Creates nothing on disk: the data directory is made by whoever is about to write into it.

Plain dataclasses and a small validator, because this module is imported by every command and
the start-up guard. Measured with ``python -X importtime`` (sum of import times of a script that
builds a two-class model once; medians of 11 runs): plain dataclasses 35 ms, msgspec 60 ms,
attrs 62 ms, pydantic 208 ms, and pydantic-settings adds asyncio and importlib.metadata on top.
Whole ``zos db status`` on SQLite, medians of 15 alternated runs: 304 ms and 325 modules with
pydantic-settings, 113 ms and 126 modules with this module. The validator also names the source
(file or variable) of each bad value, which the libraries' errors cannot know.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, cast

from zos.errors import ConfigError
from zos.urls import InvalidUrl, parse_url, sqlite_url

DEFAULT_CONFIG_PATH = Path("config.yaml")
DATABASE_URL_ENV = "ZOS_DATABASE_URL"
# Longest wait zos accepts for any timeout: a day. Python's lock waits fail at once above
# threading.TIMEOUT_MAX (~24.8 days on Linux), and no operator means more than a day.
MAX_TIMEOUT_SECONDS = 86_400.0
# A config file is a few hundred bytes; a bound keeps "--config /dev/zero" from eating memory.
MAX_CONFIG_BYTES = 1 << 20
# Variables with the prefix that are not settings: the test suite's and --traceback's.
_NOT_SETTINGS = ("ZOS_TEST_", "ZOS_DEBUG")

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# PostgreSQL truncates identifiers at 63 bytes; MariaDB allows 64. Plain names need no quoting.
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
# The servers' own schemas (MariaDB/MySQL databases): zos must never create its tables in them.
# Compared without regard to case on every server: MariaDB folds database names to lower case
# where lower_case_table_names is set, and a name that differs from a system schema only in case
# is a mistake waiting to happen on the others. PostgreSQL reserves every name beginning "pg_".
_SYSTEM_SCHEMAS = frozenset(
    {"mysql", "information_schema", "performance_schema", "sys", "pg_catalog", "pg_toast"}
)
_SYSTEM_SCHEMA_PREFIX = "pg_"


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("must be text")
    if not value.strip():
        raise ValueError("must not be empty")
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    return value


def _path(value: object) -> Path:
    # "~/zdata" means the home folder, as in a shell; Path() alone would make a folder named "~".
    return (value if isinstance(value, Path) else Path(_text(value))).expanduser()


def _optional_path(value: object) -> Path | None:
    return None if value is None else _path(value)


def _log_level(value: object) -> str:
    level = _text(value).strip().upper()
    if level not in _LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(_LOG_LEVELS)}")
    return level


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    words = {"true": True, "1": True, "yes": True, "on": True}
    words |= {"false": False, "0": False, "no": False, "off": False}
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in words:
        return words[value.strip().lower()]
    raise ValueError("must be true or false")


def _timeout(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("must be a number of seconds")
    try:
        seconds = float(value)
    except OverflowError:  # an integer beyond any float: far above the maximum
        seconds = math.inf
    except ValueError:
        raise ValueError("must be a number of seconds") from None
    if not math.isfinite(seconds) or not 0 < seconds <= MAX_TIMEOUT_SECONDS:
        raise ValueError(f"must be more than 0 and at most {MAX_TIMEOUT_SECONDS:g} seconds")
    return seconds


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("must be a whole number")
    try:
        number = int(value)
    except ValueError:
        raise ValueError("must be a whole number") from None
    if number < 1:
        raise ValueError("must be at least 1")
    return number


def _url(value: object) -> str | None:
    if value is None:
        return None
    text = _text(value).strip()
    try:
        parse_url(text)
    except InvalidUrl as error:
        raise ValueError(f"not a usable database URL: {error}") from None
    return text


def _schema(value: object) -> str | None:
    if value is None:
        return None
    name = _text(value)
    if not _SCHEMA_NAME.fullmatch(name):
        raise ValueError(
            "must be a plain name: a letter or '_', then letters, digits or '_', 63 at most"
        )
    folded = name.lower()
    if folded in _SYSTEM_SCHEMAS or folded.startswith(_SYSTEM_SCHEMA_PREFIX):
        raise ValueError(
            f"{name!r} is the database server's own schema (mysql, information_schema, "
            "performance_schema, sys and pg_* are refused); name a schema of your own"
        )
    return name


@dataclass(frozen=True, kw_only=True)
class DatabaseSettings:
    """Where the database is and how long to wait for it."""

    url: str | None = None
    # How long an SQLite connection waits for another writer before "database is locked".
    busy_timeout_seconds: float = 30.0
    # How long `zos db migrate` waits for another runner before giving up.
    lock_timeout_seconds: float = 300.0
    # Bound on connecting to a server and on its first answer.
    connect_timeout_seconds: float = 10.0
    # How long one schema change waits for a table lock before it gives up (and may retry).
    ddl_lock_timeout_seconds: float = 5.0
    # Used by migrate and repair instead of `url` (e.g. straight to the server, past a pooler).
    migrate_url: str | None = None
    # The PostgreSQL schema or MariaDB database holding the version tables; None: the default.
    schema: str | None = None

    def __post_init__(self) -> None:
        _convert_fields(self, "database.", "Settings()")


@dataclass(frozen=True, kw_only=True)
class BackupSettings:
    """Copies of an SQLite database taken before migrations change it."""

    keep: int = 5

    def __post_init__(self) -> None:
        _convert_fields(self, "backups.", "Settings()")


@dataclass(frozen=True, kw_only=True)
class Settings:
    """The effective configuration of one zos process.

    ``database`` and ``backups`` may be given as mappings of their keys. Every value is checked
    and converted on construction.

    Raises:
        ConfigError: a key is unknown or a value is bad.
    """

    data_dir: Path = Path("data")
    log_level: LogLevel = "WARNING"
    log_json: bool = False
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    backups: BackupSettings = field(default_factory=BackupSettings)
    # Where migration files live; tests and tooling point it elsewhere.
    migrations_dir: Path | None = None

    def __post_init__(self) -> None:
        for name, kind in (("database", DatabaseSettings), ("backups", BackupSettings)):
            value = getattr(self, name)
            if isinstance(value, Mapping):
                value = _section(kind, name, {key: (v, "Settings()") for key, v in value.items()})
                object.__setattr__(self, name, value)
            elif not isinstance(value, kind):
                raise ConfigError(f"Settings(): bad value for '{name}': must be a mapping of keys")
        _convert_fields(self, "", "Settings()")

    @property
    def database_url(self) -> str:
        """The URL in force: ``ZOS_DATABASE_URL``, then ``database.url``, then the SQLite file."""
        if self.database.url:
            return self.database.url
        return sqlite_url(self.data_dir / "zos.db")


_CONVERTERS: dict[str, Callable[[object], object]] = {
    "data_dir": _path,
    "log_level": _log_level,
    "log_json": _bool,
    "migrations_dir": _optional_path,
    "database.url": _url,
    "database.busy_timeout_seconds": _timeout,
    "database.lock_timeout_seconds": _timeout,
    "database.connect_timeout_seconds": _timeout,
    "database.ddl_lock_timeout_seconds": _timeout,
    "database.migrate_url": _url,
    "database.schema": _schema,
    "backups.keep": _count,
}
_SECTIONS = {"database": DatabaseSettings, "backups": BackupSettings}

# A value and where it came from: a file path, "environment variable ZOS_…" or "Settings()".
Sourced = tuple[object, str]


def load_settings(path: Path | None = None) -> Settings:
    """Read ``path`` (or ``./config.yaml`` when it exists) and the environment.

    Precedence: defaults < file < ``ZOS_DATABASE``/``ZOS_BACKUPS`` (JSON objects) <
    ``ZOS_<KEY>`` and ``ZOS_<SECTION>__<KEY>`` < ``ZOS_DATABASE_URL``. An empty variable counts
    as unset.

    Raises:
        ConfigError: the file is missing or unreadable, is not valid YAML, or holds an unknown
            key or a bad value; so does a bad or unknown ``ZOS_*`` variable.
    """
    data, source = _read_file(path)
    values: dict[str, Any] = {}
    for key, value in data.items():
        _put(values, str(key), value, source)
    for key, value, origin in _read_environment():
        _put(values, key, value, origin)
    top: dict[str, Any] = {}
    for key, item in values.items():
        if key in _SECTIONS:
            top[key] = _section(_SECTIONS[key], key, item)
        else:
            top[key] = _convert(key, *item)
    return Settings(**top)


def _put(values: dict[str, Any], key: str, value: object, source: str) -> None:
    """Place one value from ``source`` at its (possibly nested) key, refusing unknown keys."""
    if key in _SECTIONS:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{source}: bad value for '{key}': must be a mapping of keys")
        for name, item in value.items():
            _put(values, f"{key}.{name}", item, source)
        return
    if key not in _CONVERTERS:
        raise ConfigError(f"{source}: unknown key '{key}'")
    section, dot, name = key.partition(".")
    if dot:
        values.setdefault(section, {})[name] = (value, source)
    else:
        values[key] = (value, source)


def _section(kind: type[Any], prefix: str, items: Mapping[str, Sourced]) -> Any:
    converted = {}
    for name, (value, source) in items.items():
        key = f"{prefix}.{name}"
        if key not in _CONVERTERS:
            raise ConfigError(f"{source}: unknown key '{key}'")
        converted[name] = _convert(key, value, source)
    return kind(**converted)


def _convert(key: str, value: object, source: str) -> object:
    try:
        return _CONVERTERS[key](value)
    except ValueError as error:
        raise ConfigError(f"{source}: bad value for '{key}': {error}") from error


def _convert_fields(instance: object, prefix: str, source: str) -> None:
    for item in fields(cast(Any, instance)):
        key = prefix + item.name
        if key in _CONVERTERS:
            value = _convert(key, getattr(instance, item.name), source)
            object.__setattr__(instance, item.name, value)


def _read_environment() -> list[tuple[str, object, str]]:
    """Every ``ZOS_*`` setting as (key, value, source), lowest precedence first."""
    layers: tuple[list[tuple[str, object, str]], ...] = ([], [], [])
    for raw_name, value in sorted(os.environ.items()):
        name = raw_name.upper()
        if not name.startswith("ZOS_") or name.startswith(_NOT_SETTINGS) or value == "":
            continue
        source = f"environment variable {raw_name}"
        suffix = name[len("ZOS_") :].lower()
        if name == DATABASE_URL_ENV:
            layers[2].append(("database.url", value, source))
        elif suffix in _SECTIONS:
            layers[0].append((suffix, _json_object(value, source), source))
        elif "__" in suffix and suffix.replace("__", ".", 1) in _CONVERTERS:
            layers[1].append((suffix.replace("__", ".", 1), value, source))
        elif suffix in _CONVERTERS:
            layers[1].append((suffix, value, source))
        else:
            raise ConfigError(f"{source}: unknown setting{_suggestion(suffix)}")
    return [entry for layer in layers for entry in layer]


def _json_object(value: str, source: str) -> dict[str, Any]:
    import json  # only for these two variables: most runs never need it

    try:
        data = json.loads(value)
    except json.JSONDecodeError as error:
        # The position only: the text may hold a password.
        raise ConfigError(
            f"{source}: not valid JSON ({error.msg} at character {error.pos + 1})"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f'{source}: must be a JSON object of keys, such as {{"url": …}}')
    return data


def _suggestion(suffix: str) -> str:
    nested = [key for key in _CONVERTERS if key.endswith("." + suffix)]
    if nested:
        section, _, name = nested[0].partition(".")
        return f"; did you mean ZOS_{section.upper()}__{name.upper()}?"
    known = ", ".join(
        "ZOS_" + key.upper().replace(".", "__") for key in ("log_level", "database.url")
    )
    return f" (settings are named like {known})"


def _read_config_text(path: Path) -> str:
    """The file's text; a device, FIFO or socket is refused before it is opened (a FIFO would
    block the open until a writer came), and the read stops past ``MAX_CONFIG_BYTES``."""
    import stat

    try:
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            raise ConfigError(f"config file {path} is a directory")
        if not stat.S_ISREG(mode):
            raise ConfigError(f"config file {path} is not a regular file")
        with path.open("rb") as file:
            data = file.read(MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"config file {path} is larger than {MAX_CONFIG_BYTES // 1024} KiB; "
                "a zos config file is a few lines of YAML"
            )
        return data.decode("utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc


def _read_file(path: Path | None) -> tuple[dict[str, Any], str]:
    if path is None:
        if not DEFAULT_CONFIG_PATH.is_file():
            return {}, "defaults"
        path = DEFAULT_CONFIG_PATH
    path = path.expanduser()
    text = _read_config_text(path)
    import yaml  # only when there is a file to read: its import is slow

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "it is not valid YAML"
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from exc
    if data is None:
        return {}, str(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, not a list or value")
    return data, str(path)
