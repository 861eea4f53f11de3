"""PostgreSQL's read path with psycopg alone (zos.migrator.dialects.direct) reads exactly what the
SQLAlchemy path reads, and status, history and the start-up guard take it without SQLAlchemy."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import Backend, MakeMigrations, _backend, migration, run_cli
from zos.migrator.dialects.direct import PG_LOCK_KEY
from zos.migrator.reader import RecordedHistory, read_history


@pytest.fixture
def pg_backend(tmp_path: Path) -> Iterator[Backend]:
    yield from _backend("postgresql", tmp_path)


def through_sqlalchemy(backend: Backend, folder: Path, **values: object) -> RecordedHistory:
    """The same database read through SQLAlchemy: a URL option keeps the direct path away."""
    return read_history(backend.settings(folder, url=backend.url + "?connect_timeout=5", **values))


def libpq(backend: Backend) -> str:
    return backend.url.replace("postgresql+psycopg://", "postgresql://")


@pytest.mark.parametrize("schema", [None, "zos_elsewhere"])
def test_postgresql_history_read_by_psycopg_alone_equals_sqlalchemys(
    pg_backend: Backend, make_migrations: MakeMigrations, schema: str | None
) -> None:
    folder = make_migrations({"001_one.py": migration(1, "One"), "002_two.py": migration(2, "Two")})
    values = {} if schema is None else {"schema": schema}
    env = pg_backend.env(folder)
    if schema is not None:
        env["ZOS_DATABASE__SCHEMA"] = schema
    assert run_cli("db", "migrate", env=env).exit_code == 0
    with psycopg.connect(libpq(pg_backend), autocommit=True) as conn:
        where = f'"{schema}".' if schema else ""
        conn.execute(
            f"CREATE TABLE {where}_schema_backfill (version INTEGER PRIMARY KEY, "
            "last_key VARCHAR(255), rows_done BIGINT NOT NULL)"
        )
        conn.execute(f"INSERT INTO {where}_schema_backfill VALUES (2, NULL, 0)")

    direct = read_history(pg_backend.settings(folder, **values))

    assert [row.version for row in direct.applied] == [1, 2]
    assert direct.resumable == frozenset({2})
    assert _same(direct, through_sqlalchemy(pg_backend, folder, **values))


def _same(direct: RecordedHistory, other: RecordedHistory) -> bool:
    return (direct.applied, direct.resumable, direct.running) == (
        other.applied,
        other.resumable,
        other.running,
    )


def test_postgresql_run_holder_read_by_psycopg_alone_names_the_holder(
    pg_backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({"001_one.py": migration(1, "One")})
    with psycopg.connect(libpq(pg_backend), autocommit=True) as holder:
        holder.execute("SELECT set_config('application_name', 'zos: 001 is running now', false)")
        holder.execute("SELECT pg_advisory_lock(%s)", (PG_LOCK_KEY,))

        direct = read_history(pg_backend.settings(folder))

        assert direct.running is not None
        assert direct.running.startswith("001 is running now, server process ")
        assert direct.running == through_sqlalchemy(pg_backend, folder).running


def test_postgresql_database_with_no_version_table_has_recorded_nothing(
    pg_backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({"001_one.py": migration(1, "One")})

    direct = read_history(pg_backend.settings(folder))

    assert (direct.applied, direct.resumable, direct.running) == ([], frozenset(), None)


@pytest.mark.parametrize(
    "call",
    [
        "from zos.migrator import status; status(settings)",
        "from zos.migrator import history; history(settings)",
        "from zos.migrator import ensure_schema_current; ensure_schema_current(settings)",
        "from zos.migrator import migrate; migrate(settings)",
    ],
)
def test_postgresql_reads_at_version_current_import_no_sqlalchemy(
    pg_backend: Backend, make_migrations: MakeMigrations, call: str
) -> None:
    folder = make_migrations({"001_one.py": migration(1, "One")})
    assert run_cli("db", "migrate", env=pg_backend.env(folder)).exit_code == 0
    script = (
        "import sys\n"
        "from zos.config import load_settings\n"
        "settings = load_settings()\n"
        f"{call}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sqlalchemy')[:3])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=pg_backend.env(folder),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_postgresql_unreachable_server_is_one_error_without_the_password(
    make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    folder = make_migrations({"001_one.py": migration(1, "One")})
    url = "postgresql+psycopg://someone:s3cret@127.0.0.1:1/nowhere"
    env = {"ZOS_DATABASE_URL": url, "ZOS_MIGRATIONS_DIR": str(folder)}
    env["ZOS_DATA_DIR"] = str(tmp_path / "data")

    result = run_cli("db", "status", env=env)

    assert result.exit_code != 0
    assert "cannot connect to postgresql+psycopg://someone:***@127.0.0.1:1/nowhere" in (
        result.stderr
    )
    assert "s3cret" not in result.stderr + result.stdout
