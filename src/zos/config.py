"""Settings: defaults, overlaid by ``config.yaml``, overlaid by ``ZOS_*`` environment variables.

Every failure here becomes one ``ConfigError`` naming the source and the key. Creates nothing
on disk: the data directory is made by whoever is about to write into it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from zos.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("config.yaml")
DATABASE_URL_ENV = "ZOS_DATABASE_URL"

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class DatabaseSettings(BaseModel):
    """Where the database is and how long to wait for it."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = None
    # How long an SQLite connection waits for another writer before "database is locked".
    busy_timeout_seconds: float = Field(default=30.0, gt=0)
    # How long `zos db migrate` waits for another runner before giving up.
    lock_timeout_seconds: float = Field(default=300.0, gt=0)


class BackupSettings(BaseModel):
    """Copies of an SQLite database taken before migrations change it."""

    model_config = ConfigDict(extra="forbid")

    keep: int = Field(default=5, ge=1)


class Settings(BaseSettings):
    """The effective configuration of one zos process."""

    model_config = SettingsConfigDict(
        env_prefix="ZOS_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    data_dir: Path = Path("data")
    log_level: LogLevel = "WARNING"
    log_json: bool = False
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    backups: BackupSettings = Field(default_factory=BackupSettings)
    # Where migration files live; tests and tooling point it elsewhere.
    migrations_dir: Path | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file arrives as init kwargs; the environment must win over it.
        return (env_settings, init_settings)

    @property
    def database_url(self) -> str:
        """The URL in force: ``ZOS_DATABASE_URL``, then ``database.url``, then the SQLite file."""
        from_env = os.environ.get(DATABASE_URL_ENV)
        if from_env:
            return from_env
        if self.database.url:
            return self.database.url
        return f"sqlite:///{self.data_dir / 'zos.db'}"


def load_settings(path: Path | None = None) -> Settings:
    """Read ``path`` (or ``./config.yaml`` when it exists) and the environment.

    Raises:
        ConfigError: the file is missing or unreadable, is not valid YAML, or holds an unknown
            key or a bad value; so does a bad ``ZOS_*`` variable.
    """
    data, source = _read_file(path)
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from exc


def _read_file(path: Path | None) -> tuple[dict[str, Any], str]:
    if path is None:
        if not DEFAULT_CONFIG_PATH.is_file():
            return {}, "defaults"
        path = DEFAULT_CONFIG_PATH
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
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


def _describe(exc: ValidationError, source: str) -> str:
    """One line for the first problem, naming the key and where its value came from."""
    error = exc.errors()[0]
    key = ".".join(str(part) for part in error["loc"])
    env_name = "ZOS_" + "__".join(str(part) for part in error["loc"]).upper()
    origin = f"environment variable {env_name}" if env_name in os.environ else source
    if error["type"] == "extra_forbidden":
        return f"{origin}: unknown key '{key}'"
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"{origin}: bad value for '{key}': {error['msg']}{more}"
