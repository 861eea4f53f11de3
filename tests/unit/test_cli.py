"""The command line: help for every command, and every user error as one line, no traceback."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
import pytest

from tests.conftest import run_cli, run_zos
from zos import __version__
from zos.cli import cli


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        found.append((*prefix, name))
        if isinstance(command, click.Group):
            found.extend(all_commands(command, (*prefix, name)))
    return found


@pytest.mark.parametrize("path", all_commands(cli), ids=" ".join)
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = run_cli(*path, "--help")
    assert result.exit_code == 0
    assert "Usage: " in result.stdout
    assert len(result.stdout.splitlines()) > 3


def test_version_prints_the_package_version() -> None:
    assert run_cli("version").stdout == f"zos {__version__}\n"


def test_python_dash_m_zos_is_the_same_command() -> None:
    result = run_zos("version")
    assert (result.returncode, result.stdout) == (0, f"zos {__version__}\n")


def test_help_does_not_import_the_database_or_config_libraries() -> None:
    probe = (
        "import sys\n"
        "from zos.cli import cli\n"
        "try:\n"
        "    cli.main(['--help'], prog_name='zos')\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = {'sqlalchemy', 'pydantic', 'pydantic_settings', 'yaml', 'structlog'}\n"
        "print(sorted(heavy & set(sys.modules)), file=sys.stderr)\n"
    )
    result = __import__("subprocess").run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stderr.strip() == "[]"


def test_config_check_prints_the_effective_settings_with_the_password_masked() -> None:
    env = {"ZOS_DATABASE_URL": "postgresql+psycopg://zos:s3cret-pw@db.internal:5432/zos"}
    result = run_cli("config", "check", env=env)
    assert result.exit_code == 0
    assert "database.url: postgresql+psycopg://zos:***@db.internal:5432/zos" in result.stdout
    assert "s3cret-pw" not in result.stdout + result.stderr


def assert_one_error_line(result_stderr: str, expected: str) -> None:
    lines = result_stderr.strip().splitlines()
    assert len(lines) == 1, result_stderr
    assert lines[0].startswith("Error: ") and expected in lines[0], lines[0]
    assert "Traceback" not in result_stderr


def test_a_bad_config_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("database:\n  ulr: x\n")
    result = run_zos("--config", str(tmp_path / "bad.yaml"), "db", "status")
    assert result.returncode == 2
    assert_one_error_line(result.stderr, "unknown key 'database.ulr'")


def test_traceback_flag_shows_the_traceback_of_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("log_level: LOUD\n")
    result = run_zos("--traceback", "--config", str(tmp_path / "bad.yaml"), "db", "status")
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "ConfigError" in result.stderr


@pytest.mark.parametrize(
    ("url", "code", "expected"),
    [
        ("not a url", 2, "bad value for 'database.url': not a usable database URL"),
        ("oracle://scott:s3cret-pw@db/orcl", 2, "unsupported database 'oracle'"),
        ("postgresql+psycopg://zos:s3cret-pw@127.0.0.1:1/zos", 1, "cannot connect to"),
        ("mysql+pymysql://zos:s3cret-pw@127.0.0.1:1/zos", 1, "cannot connect to"),
        ("sqlite:////nonexistent-zos-dir/sub/zos.db", 1, "directory /nonexistent-zos-dir/sub"),
    ],
    ids=["unparseable", "unsupported", "postgresql-refused", "mariadb-refused", "sqlite-no-dir"],
)
@pytest.mark.parametrize("command", ["migrate", "status"])
def test_an_unusable_database_is_one_line_without_the_password(
    url: str, code: int, expected: str, command: str
) -> None:
    if command == "status" and url.startswith("sqlite"):
        code, expected = 0, ""  # status on a file that does not exist yet is version 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZOS_")}
    result = run_zos("db", command, env={**env, "ZOS_DATABASE_URL": url})
    assert result.returncode == code, result.stderr
    if code:
        assert_one_error_line(result.stderr, expected)
    assert "s3cret-pw" not in result.stdout + result.stderr


def test_status_on_a_missing_sqlite_file_creates_nothing(tmp_path: Path) -> None:
    result = run_cli("db", "status")
    assert result.exit_code == 0
    assert "Current version: 0" in result.stdout
    assert list(Path.cwd().iterdir()) == []


@pytest.mark.parametrize("command", ["migrate", "status"])
def test_a_file_that_is_not_a_database_is_one_line(command: str) -> None:
    Path("junk.db").write_bytes(b"not an sqlite database, just some text " * 20)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZOS_")}
    result = run_zos("db", command, env={**env, "ZOS_DATABASE_URL": "sqlite:///junk.db"})
    assert result.returncode == 1
    assert_one_error_line(result.stderr, "file is not a database")


def test_log_json_writes_one_json_object_per_migration_event_on_stderr() -> None:
    import json

    env = {k: v for k, v in os.environ.items() if not k.startswith("ZOS_")}
    result = run_zos("db", "migrate", env={**env, "ZOS_LOG_LEVEL": "INFO", "ZOS_LOG_JSON": "true"})
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stderr.splitlines()]
    from tests.conftest import REAL_MIGRATIONS
    from zos.migrator.discovery import discover_migrations

    versions = [script.version for script in discover_migrations(REAL_MIGRATIONS)]
    assert [(r["event"], r["version"], r["level"]) for r in records] == [
        (event, version, "info")
        for version in versions
        for event in ("migration.started", "migration.applied")
    ]
    assert records[1]["duration_ms"] >= 0 and records[1]["timestamp"].endswith("Z")


def test_at_the_default_level_migrate_logs_nothing() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZOS_")}
    result = run_zos("db", "migrate", env=env)
    assert (result.returncode, result.stderr) == (0, "")
