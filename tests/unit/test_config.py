"""Configuration: defaults < config.yaml < environment, and one clear line for every mistake."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from zos.config import Settings, load_settings
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


def test_the_new_database_keys_have_their_documented_defaults() -> None:
    database = load_settings().database
    assert database.connect_timeout_seconds == 10
    assert database.ddl_lock_timeout_seconds == 5
    assert database.migrate_url is None and database.schema is None


def test_the_new_database_keys_are_read_from_the_file_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(
        tmp_path / "c.yaml",
        "database:\n"
        "  url: postgresql+psycopg://app@pooler:6432/zos\n"
        "  migrate_url: postgresql+psycopg://owner@db:5432/zos\n"
        "  schema: zos_meta\n"
        "  connect_timeout_seconds: 3\n",
    )
    monkeypatch.setenv("ZOS_DATABASE__DDL_LOCK_TIMEOUT_SECONDS", "2.5")
    database = load_settings(path).database
    assert database.migrate_url == "postgresql+psycopg://owner@db:5432/zos"
    assert (database.schema, database.connect_timeout_seconds) == ("zos_meta", 3)
    assert database.ddl_lock_timeout_seconds == 2.5


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("lock_timeout_seconds", ".inf", "at most 86400 seconds"),
        ("lock_timeout_seconds", ".nan", "at most 86400 seconds"),
        ("lock_timeout_seconds", "3000000", "at most 86400 seconds"),
        ("busy_timeout_seconds", "0", "more than 0"),
        ("connect_timeout_seconds", "-1", "more than 0"),
        ("ddl_lock_timeout_seconds", "soon", "must be a number of seconds"),
        ("ddl_lock_timeout_seconds", "true", "must be a number of seconds"),
        ("schema", "'bad name; drop'", "must be a plain name"),
        ("migrate_url", "'postgresql://u:pw@h:x/db'", "the port must be a number"),
    ],
)
def test_a_bad_database_value_is_one_error_naming_file_and_key(
    tmp_path: Path, key: str, value: str, reason: str
) -> None:
    path = write(tmp_path / "c.yaml", f"database:\n  {key}: {value}\n")
    with pytest.raises(ConfigError, match=rf"c\.yaml: bad value for 'database\.{key}': .*{reason}"):
        load_settings(path)


@pytest.mark.parametrize(
    "schema",
    [
        "mysql",
        "information_schema",
        "performance_schema",
        "sys",
        "pg_catalog",
        "pg_toast",
        "pg_temp_3",
        "PG_Catalog",
        "MySQL",
        "Information_Schema",
    ],
)
def test_a_servers_own_schema_is_refused_as_database_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, schema: str
) -> None:
    path = write(tmp_path / "c.yaml", f"database:\n  schema: {schema}\n")
    with pytest.raises(ConfigError, match=rf"bad value for 'database\.schema': '{schema}' is the"):
        load_settings(path)
    monkeypatch.setenv("ZOS_DATABASE__SCHEMA", schema)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert raised.value.message.startswith(
        "environment variable ZOS_DATABASE__SCHEMA: bad value for 'database.schema': "
    )
    assert "\n" not in raised.value.message


SYSTEM_SCHEMAS = {"mysql", "information_schema", "performance_schema", "sys"}


@settings(derandomize=True, max_examples=300, deadline=None)
@given(
    name=st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,62}", fullmatch=True)
    | st.sampled_from(sorted(SYSTEM_SCHEMAS)).map(str.upper)
    | st.from_regex(r"[pP][gG]_[A-Za-z0-9_]{0,30}", fullmatch=True)
)
def test_a_plain_schema_name_is_accepted_unless_it_is_a_servers_own(name: str) -> None:
    system = name.lower() in SYSTEM_SCHEMAS or name.lower().startswith("pg_")
    try:
        accepted = Settings(database={"schema": name}).database.schema  # type: ignore[arg-type]
    except ConfigError as error:
        assert system, error.message
        assert "database.schema" in error.message and "\n" not in error.message
    else:
        assert not system and accepted == name


def test_an_unknown_top_level_variable_is_refused_with_a_suggestion(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ZOS_LOCK_TIMEOUT_SECONDS", "60")
    with pytest.raises(
        ConfigError,
        match=r"environment variable ZOS_LOCK_TIMEOUT_SECONDS: unknown setting; "
        r"did you mean ZOS_DATABASE__LOCK_TIMEOUT_SECONDS\?",
    ):
        load_settings()


def test_an_unknown_nested_variable_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOS_DATABASE__ULR", "sqlite:///x.db")
    with pytest.raises(ConfigError, match=r"environment variable ZOS_DATABASE__ULR: unknown"):
        load_settings()


def test_test_and_debug_variables_are_not_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOS_DEBUG", "1")
    monkeypatch.setenv("ZOS_TEST_ANYTHING", "x")
    assert load_settings().log_level == "WARNING"


def test_the_documented_variables_work(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ZOS_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("ZOS_MIGRATIONS_DIR", str(tmp_path / "m"))
    monkeypatch.setenv("ZOS_LOG_LEVEL", "info")
    monkeypatch.setenv("ZOS_BACKUPS__KEEP", "2")
    settings = load_settings()
    assert (settings.data_dir, settings.migrations_dir) == (tmp_path / "d", tmp_path / "m")
    assert (settings.log_level, settings.backups.keep) == ("INFO", 2)


def test_json_valued_variables_are_read_and_the_nested_ones_win(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ZOS_DATABASE", '{"lock_timeout_seconds": 7, "busy_timeout_seconds": 8}')
    monkeypatch.setenv("ZOS_DATABASE__BUSY_TIMEOUT_SECONDS", "9")
    monkeypatch.setenv("ZOS_BACKUPS", '{"keep": 3}')
    settings = load_settings()
    assert settings.database.lock_timeout_seconds == 7
    assert settings.database.busy_timeout_seconds == 9
    assert settings.backups.keep == 3


@pytest.mark.parametrize("name", ["ZOS_DATABASE", "ZOS_BACKUPS"])
def test_malformed_json_is_blamed_on_its_variable_without_quoting_it(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv(name, '{"url": "postgresql://u:S3cr3t@h/db"')
    with pytest.raises(ConfigError, match=rf"environment variable {name}: not valid JSON") as err:
        load_settings()
    assert "S3cr3t" not in str(err.value)


def test_a_bad_value_inside_a_json_variable_is_blamed_on_that_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ZOS_BACKUPS", '{"keep": 0}')
    with pytest.raises(
        ConfigError, match=r"environment variable ZOS_BACKUPS: bad value for 'backups\.keep'"
    ):
        load_settings()


def test_a_json_variable_that_is_not_an_object_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOS_DATABASE", "[1, 2]")
    with pytest.raises(ConfigError, match=r"ZOS_DATABASE: must be a JSON object"):
        load_settings()


def test_a_malformed_url_in_the_file_is_named_without_the_password(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "database:\n  url: postgresql+psycopg:/zos:S3cr3t@h/db\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: bad value for 'database\.url'") as err:
        load_settings(path)
    assert "S3cr3t" not in str(err.value)


def test_a_section_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "database: sqlite:///x.db\n")
    with pytest.raises(ConfigError, match=r"bad value for 'database': must be a mapping"):
        load_settings(path)


def test_settings_built_in_code_are_validated_too() -> None:
    with pytest.raises(ConfigError, match=r"'database\.lock_timeout_seconds'"):
        Settings(database={"lock_timeout_seconds": float("inf")})  # type: ignore[arg-type]


def test_the_shipped_example_sets_every_key_at_its_default() -> None:
    example = load_settings(Path(__file__).parents[2] / "config.yaml.example")
    assert example == Settings()


def test_every_key_is_documented_in_the_readme_and_the_example() -> None:
    from zos.config import _CONVERTERS

    root = Path(__file__).parents[2]
    readme = (root / "README.md").read_text()
    example = (root / "config.yaml.example").read_text()
    for key in _CONVERTERS:
        assert f"| `{key}` |" in readme, key
        assert f"{key.rpartition('.')[2]}:" in example, key


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**309, max_value=10**400)
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(["inf", "-1", "1e999", "0x10", "30", "DEBUG", "sqlite:///x.db", "1" * 5000])
)
VALUES = SCALARS | st.lists(SCALARS, max_size=2) | st.dictionaries(st.text(max_size=3), SCALARS)
KEYS = [
    "data_dir",
    "log_level",
    "log_json",
    "migrations_dir",
    "database.url",
    "database.migrate_url",
    "database.schema",
    "database.busy_timeout_seconds",
    "database.lock_timeout_seconds",
    "database.connect_timeout_seconds",
    "database.ddl_lock_timeout_seconds",
    "backups.keep",
]


@settings(derandomize=True, max_examples=600, deadline=None)
@given(key=st.sampled_from(KEYS), value=VALUES, from_env=st.booleans())
@example(key="database.lock_timeout_seconds", value=10**400, from_env=False)
def test_any_value_of_any_key_gives_settings_or_one_error_naming_the_key(
    key: str, value: object, from_env: bool
) -> None:
    import os

    section, _, name = key.rpartition(".")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "c.yaml"
        path.write_text("")
        variable = "ZOS_" + key.upper().replace(".", "__")
        text = value if isinstance(value, str) else json.dumps(value)
        if from_env and "\x00" not in text and text:
            os.environ[variable] = text
        else:
            from_env = False
            data = {section: {name: value}} if section else {key: value}
            path.write_text(yaml.safe_dump(data, allow_unicode=True))
        try:
            load_settings(path)
        except ConfigError as error:
            source = f"environment variable {variable}" if from_env else str(path)
            assert error.message.startswith(f"{source}: bad value for '{key}': ")
            assert "\n" not in error.message
        finally:
            os.environ.pop(variable, None)


def test_a_config_path_that_is_not_a_regular_file_is_refused_without_opening_it(
    tmp_path: Path,
) -> None:
    fifo = tmp_path / "config.fifo"
    os.mkfifo(fifo)  # opening it would wait for a writer forever
    with pytest.raises(ConfigError, match="is not a regular file"):
        load_settings(fifo)
    with pytest.raises(ConfigError, match="is not a regular file"):
        load_settings(Path("/dev/zero"))


def test_a_config_file_past_the_size_bound_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("# " + "x" * (1 << 20) + "\n")
    with pytest.raises(ConfigError, match="larger than 1024 KiB"):
        load_settings(path)


def test_a_tilde_in_a_path_setting_or_the_config_path_is_the_home_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "zos.yaml").write_text("data_dir: ~/zdata\nmigrations_dir: ~/mig\n")
    settings = load_settings(Path("~/zos.yaml"))
    assert settings.data_dir == tmp_path / "zdata"
    assert settings.migrations_dir == tmp_path / "mig"
