"""Configuration: defaults < config.yaml < environment, and one clear line for every mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from zos.config import load_settings
from zos.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_no_file_means_defaults_and_the_sqlite_file_in_the_data_dir() -> None:
    settings = load_settings()
    assert settings.data_dir == Path("data")
    assert settings.log_level == "WARNING" and settings.log_json is False
    assert settings.database_url == "sqlite:///data/zos.db"


def test_loading_settings_creates_no_data_directory() -> None:
    load_settings()
    assert not Path("data").exists()


def test_config_yaml_in_the_working_directory_is_read_when_present() -> None:
    write(Path("config.yaml"), "log_level: DEBUG\ndata_dir: /srv/zos\n")
    settings = load_settings()
    assert settings.log_level == "DEBUG"
    assert settings.database_url == "sqlite:////srv/zos/zos.db"


def test_an_explicit_path_is_read(tmp_path: Path) -> None:
    path = write(tmp_path / "other.yaml", "database:\n  url: postgresql+psycopg://u@h/db\n")
    assert load_settings(path).database_url == "postgresql+psycopg://u@h/db"


def test_the_environment_overrides_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "c.yaml", "log_json: false\ndatabase:\n  lock_timeout_seconds: 5\n")
    monkeypatch.setenv("ZOS_LOG_JSON", "true")
    monkeypatch.setenv("ZOS_DATABASE__LOCK_TIMEOUT_SECONDS", "9")
    settings = load_settings(path)
    assert settings.log_json is True
    assert settings.database.lock_timeout_seconds == 9


def test_zos_database_url_beats_the_file_which_beats_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "c.yaml", "database:\n  url: sqlite:///from-file.db\n")
    assert load_settings(path).database_url == "sqlite:///from-file.db"
    monkeypatch.setenv("ZOS_DATABASE_URL", "sqlite:///from-env.db")
    assert load_settings(path).database_url == "sqlite:///from-env.db"


def test_invalid_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "log_level: INFO\ndatabase: [unclosed\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: invalid YAML at line \d+, column \d+"):
        load_settings(path)


def test_an_unknown_key_is_named_with_its_file(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "database:\n  ulr: sqlite:///x.db\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: unknown key 'database\.ulr'$"):
        load_settings(path)


def test_a_bad_value_is_named_with_its_file(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "log_level: LOUD\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: bad value for 'log_level': "):
        load_settings(path)


def test_a_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOS_LOG_JSON", "perhaps")
    with pytest.raises(ConfigError, match=r"environment variable ZOS_LOG_JSON: bad value"):
        load_settings()


def test_a_top_level_list_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "- a\n- b\n")
    with pytest.raises(ConfigError, match="the top level must be a mapping"):
        load_settings(path)


def test_a_missing_explicit_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file .*missing\.yaml does not exist"):
        load_settings(tmp_path / "missing.yaml")


def test_an_empty_file_means_defaults(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path / "c.yaml", "")).log_level == "WARNING"


def test_the_shipped_example_is_valid() -> None:
    example = Path(__file__).parents[2] / "config.yaml.example"
    settings = load_settings(example)
    assert settings.data_dir == Path("data")
