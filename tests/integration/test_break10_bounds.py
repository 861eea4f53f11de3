"""Issue 10 break: waits that still have no bound, and schemas zos should never write into."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Backend, MakeMigrations, _backend, migration, run_zos
from tests.integration.test_silent_server import URLS, silent_port  # noqa: F401  (fixture)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZOS_")}
    env["ZOS_DATABASE__CONNECT_TIMEOUT_SECONDS"] = "2"
    return env


@pytest.mark.parametrize("server", ["postgresql", "mariadb"])
def test_verify_against_a_server_that_never_answers_gives_one_cannot_connect_line(
    server: str,
    silent_port: int,  # noqa: F811
    tmp_path: Path,
) -> None:
    url = URLS[server].format(port=silent_port)
    # A hang is what this test exists to catch: the limit is a generous multiple of 2 s plus
    # the SQLite checks verify runs first.
    result = run_zos("db", "verify", "--backend", url, env=_env(), cwd=tmp_path, timeout=60)
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    shown = url.replace("secret-pw", "***")
    assert errors[0].startswith(f"Error: cannot connect to {shown}: "), errors[0]
    assert "OperationalError" not in errors[0]  # the driver's words, not SQLAlchemy's prefix
    assert "secret-pw" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("server", "options"),
    [
        ("postgresql", "?connect_timeout=0"),  # libpq: wait forever
        ("postgresql", "?connect_timeout=600"),
        ("mariadb", "?connect_timeout=600"),
        ("mariadb", "?connect_timeout=600&read_timeout=600"),
    ],
)
def test_a_url_asking_for_no_or_a_longer_connect_timeout_is_still_bounded_by_the_setting(
    server: str,
    options: str,
    silent_port: int,  # noqa: F811
    tmp_path: Path,
) -> None:
    env = _env()
    env["ZOS_DATABASE_URL"] = URLS[server].format(port=silent_port) + options
    # The smaller bound wins: 2 s here, whatever the URL asks. A hang runs into the limit.
    result = run_zos("db", "status", env=env, cwd=tmp_path, timeout=60)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("Error: cannot connect to "), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.fixture(params=["postgresql", "mariadb"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    yield from _backend(request.param, tmp_path)


SYSTEM_SCHEMAS = {
    "postgresql": ["information_schema", "pg_catalog", "pg_toast"],
    "mariadb": ["mysql", "information_schema", "performance_schema", "sys"],
}


def test_database_schema_refuses_the_servers_own_schemas_with_one_line(
    server: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(
        {
            "001_t.py": migration(
                1, "T", "conn.execute(text('CREATE TABLE zos_break10_t (id INTEGER)'))"
            )
        }
    )
    for schema in SYSTEM_SCHEMAS[server.name]:
        env = server.env(folder) | {"ZOS_DATABASE__SCHEMA": schema}
        try:
            result = run_zos("db", "migrate", "--no-backup", env=env)
            lines = result.stderr.strip().splitlines()
            assert result.returncode == 2, (schema, result.stdout, result.stderr)
            assert len(lines) == 1, result.stderr
            assert "database.schema" in lines[0], lines[0]
        finally:
            _drop_leftovers(server, schema)


def _drop_leftovers(server: Backend, schema: str) -> None:
    """Never leave zos's tables in a system schema of the shared test server."""
    from sqlalchemy import text

    engine = server.engine()
    try:
        with engine.connect() as conn:
            for table in ("zos_break10_t", "_schema_version", "_schema_backfill"):
                try:
                    conn.execute(text(f"DROP TABLE IF EXISTS {schema}.{table}"))
                    conn.commit()
                except Exception:  # a schema that refuses DROP had nothing created in it
                    conn.rollback()
    finally:
        engine.dispose()
