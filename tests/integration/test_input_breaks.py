"""Inputs found by a reviewer that still end in a traceback, a stray warning, or two commands
reading the same setting two ways (issue 11). Each test states what a user should see."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import Backend, _backend, run_zos

SECRET = "S3cr3tZq"


def _env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZOS_")}
    env.update(values)
    return env


def _one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.strip().splitlines() if not line.startswith("  - ")]
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    return lines[0]


@pytest.mark.parametrize(
    "query",
    [
        "charset=nope",
        "read_timeout=abc",
        "client_flag=abc",
        "local_infile=2",
        "ssl_ca=/nonexistent/ca.pem",
    ],
)
def test_a_bad_mariadb_url_option_is_one_error_line_naming_the_url(query: str) -> None:
    url = f"mysql+pymysql://root:{SECRET}@127.0.0.1:3306/test?{query}"
    result = run_zos("db", "status", env=_env(ZOS_DATABASE_URL=url))
    assert result.returncode in (1, 2)
    line = _one_error_line(result.stderr)
    assert SECRET not in result.stdout + result.stderr
    assert query.split("=")[0] in line


@pytest.mark.parametrize("query", ["port=abc"])
def test_a_bad_postgresql_url_option_is_one_error_line(query: str) -> None:
    url = f"postgresql+psycopg://postgres:{SECRET}@127.0.0.1:5432/test?{query}"
    result = run_zos("db", "status", env=_env(ZOS_DATABASE_URL=url))
    assert result.returncode in (1, 2)
    _one_error_line(result.stderr)
    assert SECRET not in result.stdout + result.stderr


@pytest.mark.parametrize("query", ["timeout=abc", "check_same_thread=maybe"])
def test_a_bad_sqlite_url_option_gets_the_same_verdict_from_status_and_migrate(
    tmp_path: Path, query: str
) -> None:
    url = f"sqlite:///{tmp_path}/zos.db?{query}"
    env = _env(ZOS_DATABASE_URL=url)
    migrate = run_zos("db", "migrate", env=env)
    _one_error_line(migrate.stderr)
    assert migrate.returncode == 2, migrate.stderr
    status = run_zos("db", "status", env=env)
    assert status.returncode == migrate.returncode, (status.stdout, status.stderr)


def test_an_sqlite_uri_filename_names_the_same_file_for_migrate_and_status(
    tmp_path: Path,
) -> None:
    # SQLAlchemy's documented form for SQLite URI filenames: sqlite:///file:path?...&uri=true.
    env = _env(ZOS_DATABASE_URL="sqlite:///file:b.db?mode=rwc&uri=true")
    migrate = run_zos("db", "migrate", env=env, cwd=tmp_path)
    assert migrate.returncode == 0, migrate.stderr
    status = run_zos("db", "status", env=env, cwd=tmp_path)
    history = run_zos("db", "history", "--json", env=env, cwd=tmp_path)
    # Either both refuse the URL, or both see the version migrate just wrote.
    assert "Current version: 1" in status.stdout, status.stdout
    assert '"version": 1' in history.stdout, history.stdout


def test_a_sqlite_query_option_prints_no_sqlalchemy_warning(tmp_path: Path) -> None:
    env = _env(ZOS_DATABASE_URL=f"sqlite:///{tmp_path}/zos.db?mode=ro")
    result = run_zos("db", "migrate", env=env, cwd=tmp_path)
    assert "SAWarning" not in result.stderr, result.stderr
    assert result.returncode == 2 or result.stderr == "", result.stderr


def test_migrate_connects_through_database_migrate_url(tmp_path: Path) -> None:
    # README: database.migrate_url is "used by migrate and repair instead of database.url".
    # Point it at a port where nothing listens: migrate must fail to connect, not use url.
    config = tmp_path / "config.yaml"
    config.write_text(
        "database:\n"
        f"  url: 'sqlite:///{tmp_path}/zos.db'\n"
        f"  migrate_url: 'postgresql+psycopg://postgres:{SECRET}@127.0.0.1:1/nowhere'\n"
    )
    result = run_zos("--config", str(config), "db", "migrate", env=_env(), cwd=tmp_path)
    assert result.returncode == 1, result.stdout
    line = _one_error_line(result.stderr)
    assert "127.0.0.1:1" in line
    assert SECRET not in result.stdout + result.stderr
    assert not (tmp_path / "zos.db").exists()


def _status_and_migrate(folder: Path, tmp_path: Path) -> tuple[int, int]:
    env = _env(ZOS_MIGRATIONS_DIR=str(folder), ZOS_DATA_DIR=str(tmp_path / "data"))
    status = run_zos("db", "status", env=env, cwd=tmp_path)
    migrate = run_zos("db", "migrate", env=env, cwd=tmp_path)
    return status.returncode, migrate.returncode


def test_status_and_migrate_give_the_same_verdict_on_a_file_whose_import_fails(
    tmp_path: Path,
) -> None:
    # Issue 11: "the same file is valid or invalid for status, migrate, --dry-run, check and
    # the guard alike". Here status reports a pending migration and exits 0; migrate refuses it.
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "001_x.py").write_text(
        'import no_such_module_zz\nVERSION = 1\nDESCRIPTION = "x"\n\n\n'
        "def upgrade(conn):\n    pass\n"
    )
    status, migrate = _status_and_migrate(folder, tmp_path)
    assert migrate == 1
    assert status == migrate


def test_a_helper_package_beside_the_migrations_imports_as_a_private_helper_does(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "migrations"
    (folder / "_helpers").mkdir(parents=True)
    (folder / "_helpers" / "x.py").write_text("def f():\n    return 1\n")
    (folder / "001_x.py").write_text(
        'import _helpers.x\nVERSION = 1\nDESCRIPTION = "x"\n\n\n'
        "def upgrade(conn):\n    _helpers.x.f()\n"
    )
    status, migrate = _status_and_migrate(folder, tmp_path)
    assert (status, migrate) == (0, 0)


@pytest.fixture
def postgresql(tmp_path: Path) -> Iterator[Backend]:
    """A throwaway PostgreSQL database migrated to the newest version."""
    for database in _backend("postgresql", tmp_path):
        assert run_zos("db", "migrate", env=database.env()).returncode == 0
        yield database


def _alter_and_check(database: Backend, *statements: str) -> tuple[int, str]:
    engine = create_engine(database.url)
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))
    engine.dispose()
    result = run_zos("db", "check", env=database.env())
    return result.returncode, result.stdout + result.stderr


def test_check_sees_an_index_made_partial_by_hand(postgresql: Backend) -> None:
    code, output = _alter_and_check(
        postgresql,
        "DROP INDEX ix_messages_author_created",
        "CREATE INDEX ix_messages_author_created ON messages (author_id, created_at) "
        "WHERE deleted_at IS NULL",
    )
    assert code == 1, output
    assert "ix_messages_author_created" in output


def test_check_names_the_difference_when_a_foreign_key_became_deferrable(
    postgresql: Backend,
) -> None:
    code, output = _alter_and_check(
        postgresql,
        "ALTER TABLE messages DROP CONSTRAINT fk_messages_channel_id_channels, "
        "ADD CONSTRAINT fk_messages_channel_id_channels FOREIGN KEY (channel_id) "
        "REFERENCES channels (id) DEFERRABLE INITIALLY DEFERRED",
    )
    assert code == 1, output
    assert "deferr" in output.lower(), output


@pytest.fixture
def mariadb(tmp_path: Path) -> Iterator[Backend]:
    """A throwaway MariaDB database migrated to the newest version."""
    for database in _backend("mariadb", tmp_path):
        assert run_zos("db", "migrate", env=database.env()).returncode == 0
        yield database


def test_check_sees_an_index_turned_into_a_prefix_index_by_hand(mariadb: Backend) -> None:
    code, output = _alter_and_check(
        mariadb,
        "ALTER TABLE messages DROP INDEX ix_messages_author_created, "
        "ADD INDEX ix_messages_author_created (author_id(8), created_at)",
    )
    assert code == 1, output
    assert "ix_messages_author_created" in output


@pytest.mark.parametrize("args", [("db", "migrate"), ("db", "migrate", "--dry-run")])
def test_a_data_dir_that_is_a_file_is_one_error_line(tmp_path: Path, args: tuple[str, ...]) -> None:
    (tmp_path / "afile").write_text("x")
    result = run_zos(*args, env=_env(ZOS_DATA_DIR="afile"), cwd=tmp_path)
    assert result.returncode in (1, 2)
    line = _one_error_line(result.stderr)
    assert "afile" in line


def test_a_data_dir_starting_with_a_tilde_is_the_home_folder(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = _env(ZOS_DATA_DIR="~/zdata", HOME=str(home))
    result = run_zos("db", "migrate", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "~").exists()
    assert (home / "zdata" / "zos.db").is_file()


def test_db_new_never_reuses_the_number_of_an_unreadable_migration_file(tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "001_a.py").write_text(
        'VERSION = 1\nDESCRIPTION = "a"\n\n\ndef upgrade(conn):\n    pass\n'
    )
    (folder / "002_b.py").symlink_to(tmp_path / "not_yet_there.py")  # e.g. a broken link
    result = run_zos("db", "new", "c", env=_env(ZOS_MIGRATIONS_DIR=str(folder)), cwd=tmp_path)
    numbers = sorted(path.name[:3] for path in folder.iterdir())
    # Either it refuses (the folder has a problem) or it numbers above 002.
    assert len(numbers) == len(set(numbers)), (numbers, result.stdout, result.stderr)


def _limit_memory() -> None:
    limit = 1 << 30  # 1 GiB of address space: plenty for zos, not for an endless file
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def test_a_config_path_that_never_ends_is_one_error_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "zos", "--config", "/dev/zero", "config", "check"],
        env=_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_limit_memory,
    )
    assert result.returncode == 2, result.stderr[-500:]
    _one_error_line(result.stderr)


# Added by the fixer (helper-fix11): the same kinds, on the commands the cases above leave out.


@pytest.mark.parametrize("args", [("db", "status"), ("db", "history"), ("db", "check")])
def test_every_command_says_a_data_dir_that_is_a_file_is_not_a_folder(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    (tmp_path / "afile").write_text("x")
    result = run_zos(*args, env=_env(ZOS_DATA_DIR="afile"), cwd=tmp_path)
    assert result.returncode == 2, result.stdout
    assert "afile is a file, not a folder" in _one_error_line(result.stderr)


@pytest.mark.parametrize(
    "args", [("db", "migrate", "--dry-run"), ("db", "repair", "--forget", "1")]
)
def test_dry_run_and_repair_connect_through_database_migrate_url(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "database:\n"
        f"  url: 'sqlite:///{tmp_path}/zos.db'\n"
        f"  migrate_url: 'postgresql+psycopg://postgres:{SECRET}@127.0.0.1:1/nowhere'\n"
    )
    result = run_zos("--config", str(config), *args, env=_env(), cwd=tmp_path)
    assert result.returncode == 1, result.stdout
    assert "127.0.0.1:1" in _one_error_line(result.stderr)
    assert SECRET not in result.stdout + result.stderr
    assert not (tmp_path / "zos.db").exists()


def test_status_keeps_database_url_when_migrate_url_is_set(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "database:\n"
        f"  url: 'sqlite:///{tmp_path}/zos.db'\n"
        f"  migrate_url: 'postgresql+psycopg://postgres:{SECRET}@127.0.0.1:1/nowhere'\n"
    )
    result = run_zos("--config", str(config), "db", "status", env=_env(), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Current version: 0" in result.stdout


@pytest.mark.parametrize("query", ["compress=true", "charset=nope", "timeout=1&timeout=2"])
def test_other_refused_url_options_are_one_error_line(query: str) -> None:
    url = f"mysql+pymysql://root:{SECRET}@127.0.0.1:3306/test?{query}"
    result = run_zos("db", "status", env=_env(ZOS_DATABASE_URL=url))
    assert result.returncode == 2
    line = _one_error_line(result.stderr)
    assert query.split("=")[0] in line
    assert SECRET not in result.stdout + result.stderr
