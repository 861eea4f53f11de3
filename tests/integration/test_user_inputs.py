"""What operators write — URLs, settings, variables, file permissions — reaches every command the
same way: one reading of a URL, one ``Error:`` line for a bad value, never a password."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Backend, run_cli, run_zos
from zos.config import load_settings
from zos.migrator import ensure_schema_current


def head() -> int:
    """The newest version of the real migrations."""
    from tests.conftest import REAL_MIGRATIONS
    from zos.migrator.discovery import discover_migrations

    return discover_migrations(REAL_MIGRATIONS)[-1].version


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_every_command_reads_a_percent_encoded_sqlite_url_as_the_same_file(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "my db"
    folder.mkdir()
    env = {"ZOS_DATABASE_URL": f"sqlite:///{tmp_path}/my%20db/zos.db"}
    assert run_cli("db", "migrate", env=env).exit_code == 0
    assert (folder / "zos.db").is_file()
    status = run_cli("db", "status", env=env)
    assert (status.exit_code, f"Current version: {head()}" in status.stdout) == (0, True)
    history = run_cli("db", "history", "--json", env=env)
    assert '"version": 1' in history.stdout
    assert run_cli("db", "check", env=env).exit_code == 0
    os.environ.update(env)
    try:
        ensure_schema_current(load_settings())  # the start-up guard agrees: nothing raised
    finally:
        del os.environ["ZOS_DATABASE_URL"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"ZOS_LOCK_TIMEOUT_SECONDS": "60"},
            "ZOS_LOCK_TIMEOUT_SECONDS: unknown setting; did you mean "
            "ZOS_DATABASE__LOCK_TIMEOUT_SECONDS?",
        ),
        ({"ZOS_DATABASE": '{"url": '}, "environment variable ZOS_DATABASE: not valid JSON"),
        ({"ZOS_BACKUPS": "{keep: 1}"}, "environment variable ZOS_BACKUPS: not valid JSON"),
        (
            {"ZOS_DATABASE__LOCK_TIMEOUT_SECONDS": "1e300"},
            "'database.lock_timeout_seconds': must be more than 0 and at most 86400 seconds",
        ),
        (
            {"ZOS_DATABASE_URL": "mysql+pymysql://zos:S3cr3t-pw@127.0.0.1:1"},
            "must name its database",
        ),
        (
            {"ZOS_DATABASE_URL": "postgresql+psycopg://zos:S3cr3t-pw@127.0.0.1:port/db"},
            "the port must be a number",
        ),
        (
            {"ZOS_DATABASE_URL": "postgresql+psycopg://zos:S3cr3t-pw@[::1/db"},
            "no closing ']'",
        ),
        ({"ZOS_DATABASE_URL": "sqlite+aiosqlite:///zos.db"}, "unsupported driver 'aiosqlite'"),
        (
            {"ZOS_DATABASE_URL": "postgresql+psycopg:/zos:S3cr3t-pw@127.0.0.1/db"},
            "must be followed by '//'",
        ),
    ],
)
@pytest.mark.parametrize("command", ["status", "backup", "migrate"])
def test_a_bad_setting_is_one_line_and_exit_2_for_every_command(
    env: dict[str, str], expected: str, command: str
) -> None:
    result = run_cli("db", command, env=env)
    assert result.exit_code == 2
    assert expected in one_error_line(result.stderr)
    assert "S3cr3t-pw" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://zos:p@ssw0rd-x@127.0.0.1:1/zos",
        "postgresql+psycopg://zos@127.0.0.1:1/zos?password=p@ssw0rd-x",
        "mysql+pymysql://zos:p@ssw0rd-x@127.0.0.1:1/zos",
    ],
)
@pytest.mark.parametrize("command", [("config", "check"), ("db", "status"), ("db", "migrate")])
def test_a_password_of_any_shape_is_never_printed(url: str, command: tuple[str, str]) -> None:
    result = run_cli(*command, env={"ZOS_DATABASE_URL": url})
    assert result.exit_code in (0, 1)
    assert "ssw0rd" not in result.stdout + result.stderr
    if result.exit_code:
        assert "cannot connect to" in one_error_line(result.stderr)


@pytest.fixture
def read_only_database(tmp_path: Path) -> Iterator[Path]:
    """A migrated SQLite database whose file and folder this user cannot write."""
    folder = tmp_path / "data"
    env = {"ZOS_DATABASE_URL": f"sqlite:///{folder}/zos.db"}
    folder.mkdir()
    assert run_cli("db", "migrate", "--no-backup", env=env).exit_code == 0
    database = folder / "zos.db"
    database.chmod(0o444)
    folder.chmod(0o555)
    # Root ignores permissions; the immutable flag binds root too.
    immutable = os.geteuid() == 0 and shutil.which("chattr") is not None
    if immutable:
        subprocess.run(["chattr", "+i", str(database), str(folder)], check=False)
    try:
        if os.access(database, os.W_OK):
            pytest.skip("this user can write any file and cannot set the immutable flag")
        yield database
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(database), str(folder)], check=False)
        folder.chmod(0o755)
        database.chmod(0o644)


@pytest.mark.parametrize("command", ["status", "history", "check"])
def test_a_read_only_database_can_be_inspected(read_only_database: Path, command: str) -> None:
    env = {"ZOS_DATABASE_URL": f"sqlite:///{read_only_database}"}
    result = run_cli("db", command, env=env)
    assert result.exit_code == 0, result.stderr
    assert "readonly" not in result.stdout + result.stderr


def test_migrate_on_a_read_only_database_with_work_to_do_is_one_line(
    read_only_database: Path, make_migrations: object, tmp_path: Path
) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    source = Path(__file__).parents[2] / "src" / "zos" / "migrations" / "001_initial.py"
    shutil.copy(source, folder)
    (folder / "002_more.py").write_text(
        "from sqlalchemy import text\n\nVERSION = 2\nDESCRIPTION = 'More'\n\n\n"
        "def upgrade(conn):\n    conn.execute(text('CREATE TABLE more (a INTEGER)'))\n"
    )
    env = {
        "ZOS_DATABASE_URL": f"sqlite:///{read_only_database}",
        "ZOS_MIGRATIONS_DIR": str(folder),
    }
    result = run_cli("db", "migrate", env=env)
    assert result.exit_code == 1
    assert "the file is read-only to this user" in one_error_line(result.stderr)


def test_status_on_sqlite_imports_no_sqlalchemy_pydantic_asyncio_or_metadata(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZOS_")}
    env["ZOS_DATA_DIR"] = str(tmp_path / "data")
    assert run_zos("db", "migrate", env=env).returncode == 0
    probe = (
        "import sys\n"
        "from zos.cli import cli\n"
        "try:\n"
        "    cli.main(['db', 'status'], prog_name='zos')\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = {'sqlalchemy', 'pydantic', 'pydantic_settings', 'asyncio', 'importlib.metadata'}\n"
        "print(sorted(heavy & set(sys.modules)), file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    )
    assert f"Current version: {head()}" in result.stdout
    assert result.stderr.strip().splitlines()[-1] == "[]"


def test_a_url_option_the_driver_does_not_take_is_one_line_and_exit_2() -> None:
    url = "mysql+pymysql://zos:S3cr3t-pw@127.0.0.1:1/zos?sslmode=disable"
    result = run_cli("db", "status", env={"ZOS_DATABASE_URL": url})
    assert result.exit_code == 2
    assert "the driver refused an option of the URL" in one_error_line(result.stderr)
    assert "S3cr3t-pw" not in result.stdout + result.stderr


def test_config_check_shows_the_new_keys_with_passwords_masked(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "database:\n"
        "  url: postgresql+psycopg://app:S3cr3t-pw@pooler:6432/zos\n"
        "  migrate_url: postgresql+psycopg://owner:S3cr3t-pw@db/zos?password=S3cr3t-pw\n"
        "  schema: zos_meta\n"
        "  connect_timeout_seconds: 2.5\n"
    )
    result = run_cli("--config", str(config), "config", "check")
    assert result.exit_code == 0
    assert "database.url: postgresql+psycopg://app:***@pooler:6432/zos" in result.stdout
    assert "database.migrate_url: postgresql+psycopg://owner:***@db/zos?password=***" in (
        result.stdout
    )
    assert "database.schema: zos_meta" in result.stdout
    assert "database.connect_timeout_seconds: 2.5" in result.stdout
    assert "database.ddl_lock_timeout_seconds: 5" in result.stdout
    assert "S3cr3t-pw" not in result.stdout + result.stderr


def test_the_connect_timeout_reaches_the_driver(server_backend: Backend) -> None:
    from zos.database import get_engine

    engine = get_engine(server_backend.settings(connect_timeout_seconds=3.2))
    try:
        with engine.connect() as conn:
            driver_conn = conn.connection.dbapi_connection
            if server_backend.name == "postgresql":
                assert "connect_timeout=4" in driver_conn.info.dsn  # type: ignore[union-attr]
            else:
                assert driver_conn.connect_timeout == 4  # type: ignore[union-attr]
    finally:
        engine.dispose()
