"""``database.schema`` and migrations that change the session's search path or current
database (issue 10): zos's own tables are always the run's, and every migration starts with the
session state the runner set."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text

from tests.conftest import Backend, MakeMigrations, _backend, migration, run_cli
from zos.errors import ConfigError
from zos.migrator import ensure_schema_current


@pytest.fixture
def pg_backend(tmp_path: Path) -> Iterator[Backend]:
    yield from _backend("postgresql", tmp_path)


@pytest.fixture
def mariadb_backend(tmp_path: Path) -> Iterator[Backend]:
    yield from _backend("mariadb", tmp_path)


CREATE_WIDGETS = "conn.execute(text('CREATE TABLE widgets (id INTEGER PRIMARY KEY)'))"


def tables_in(backend: Backend, schema: str) -> set[str]:
    engine = create_engine(backend.url)
    try:
        with engine.connect() as conn:
            if backend.name == "postgresql":
                query = "SELECT table_name FROM information_schema.tables WHERE table_schema = :s"
            else:
                query = "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = :s"
            return {row[0] for row in conn.execute(text(query), {"s": schema})}
    finally:
        engine.dispose()


def test_postgresql_schema_setting_keeps_its_own_history_apart_from_public(
    pg_backend: Backend, make_migrations: MakeMigrations
) -> None:
    backend = pg_backend
    folder = make_migrations({"001_widgets.py": migration(1, "Widgets", CREATE_WIDGETS)})
    env = backend.env(folder)
    # Another tenant, in public, is already at version 1.
    assert run_cli("db", "migrate", env=env).exit_code == 0
    tenant = env | {"ZOS_DATABASE__SCHEMA": "tenant_b"}

    status = run_cli("db", "status", env=tenant)
    assert "Current version: 0" in status.stdout
    assert "Pending migrations: 1" in status.stdout
    result = run_cli("db", "migrate", env=tenant)
    assert result.exit_code == 0, result.stderr
    assert "Migrated from version 0 to 1" in result.stdout
    assert tables_in(backend, "tenant_b") == {"_schema_version", "widgets"}
    assert tables_in(backend, "public") == {"_schema_version", "widgets"}
    again = run_cli("db", "status", env=tenant)
    assert "Current version: 1" in again.stdout
    assert "No pending migrations" in again.stdout


def test_a_migration_that_moves_the_search_path_does_not_move_the_next_one(
    pg_backend: Backend, make_migrations: MakeMigrations
) -> None:
    backend = pg_backend
    folder = make_migrations(
        {
            "001_app.py": migration(
                1,
                "App schema",
                "conn.execute(text('CREATE SCHEMA app'))\n"
                "conn.execute(text('SET search_path TO app'))\n"
                "conn.execute(text('CREATE TABLE in_app (id INTEGER)'))",
            ),
            "002_widgets.py": migration(2, "Widgets", CREATE_WIDGETS),
        }
    )
    result = run_cli("db", "migrate", env=backend.env(folder))
    assert result.exit_code == 0, result.stderr
    # 001's own table went where it asked; its record and 002's table stayed in public.
    assert tables_in(backend, "app") == {"in_app"}
    assert tables_in(backend, "public") == {"_schema_version", "widgets"}
    status = run_cli("db", "status", env=backend.env(folder))
    assert "Current version: 2" in status.stdout


def test_a_migration_that_switches_database_is_recorded_in_the_runs_database(
    mariadb_backend: Backend, make_migrations: MakeMigrations
) -> None:
    backend = mariadb_backend
    other = backend.sibling()
    other_name = other.url.rsplit("/", 1)[1]
    folder = make_migrations(
        {
            "001_other.py": migration(
                1,
                "Elsewhere",
                f"conn.execute(text('USE {other_name}'))\n"
                "conn.execute(text('CREATE TABLE elsewhere (id INTEGER)'))",
            ),
            "002_widgets.py": migration(2, "Widgets", CREATE_WIDGETS),
        }
    )
    result = run_cli("db", "migrate", env=backend.env(folder))
    assert result.exit_code == 0, result.stderr
    mine = backend.url.rsplit("/", 1)[1]
    assert tables_in(backend, other_name) == {"elsewhere"}
    assert tables_in(backend, mine) == {"_schema_version", "widgets"}
    engine = backend.engine()
    with engine.connect() as conn:
        states = dict(conn.execute(text("SELECT version, state FROM _schema_version")).all())
    engine.dispose()
    assert states == {1: "applied", 2: "applied"}


def test_mariadb_schema_setting_names_the_database(
    mariadb_backend: Backend, make_migrations: MakeMigrations
) -> None:
    backend = mariadb_backend
    other = backend.sibling()
    other_name = other.url.rsplit("/", 1)[1]
    folder = make_migrations({"001_widgets.py": migration(1, "Widgets", CREATE_WIDGETS)})
    env = backend.env(folder) | {"ZOS_DATABASE__SCHEMA": other_name}
    result = run_cli("db", "migrate", env=env)
    assert result.exit_code == 0, result.stderr
    assert tables_in(backend, other_name) == {"_schema_version", "widgets"}
    assert tables_in(backend, backend.url.rsplit("/", 1)[1]) == set()


def test_a_search_path_from_the_url_never_reads_another_schemas_history(
    pg_backend: Backend, make_migrations: MakeMigrations
) -> None:
    backend = pg_backend
    folder = make_migrations({"001_widgets.py": migration(1, "Widgets", CREATE_WIDGETS)})
    assert run_cli("db", "migrate", env=backend.env(folder)).exit_code == 0  # public: version 1
    engine = create_engine(backend.url)
    with engine.begin() as conn:
        conn.execute(text("CREATE SCHEMA tenant_b"))
    engine.dispose()
    env = backend.env(folder)
    env["ZOS_DATABASE_URL"] = backend.url + "?options=-csearch_path%3Dtenant_b,public"

    status = run_cli("db", "status", env=env)
    assert "Current version: 0" in status.stdout, status.stdout + status.stderr
    result = run_cli("db", "migrate", env=env)
    assert result.exit_code == 0, result.stderr
    assert "Migrated from version 0 to 1" in result.stdout
    assert tables_in(backend, "tenant_b") == {"_schema_version", "widgets"}


@pytest.mark.parametrize("reader", ["psycopg", "sqlalchemy"])
def test_a_default_search_path_that_puts_an_empty_schema_first_is_refused_by_every_command(
    pg_backend: Backend, make_migrations: MakeMigrations, reader: str
) -> None:
    # The role's default for this database (as ALTER ROLE … IN DATABASE … SET, which a
    # migration may run) puts an empty schema before public, which holds the history.
    backend = pg_backend
    folder = make_migrations({"001_widgets.py": migration(1, "Widgets", CREATE_WIDGETS)})
    env = backend.env(folder)
    assert run_cli("db", "migrate", env=env).exit_code == 0  # public: version 1
    database = make_url(backend.url).database
    engine = create_engine(backend.url)
    with engine.begin() as conn:
        conn.execute(text("CREATE SCHEMA app"))
        conn.execute(
            text(f"ALTER ROLE CURRENT_USER IN DATABASE {database} SET search_path = app, public")
        )
    engine.dispose()
    # A URL option sends the SQLAlchemy read path; none, the psycopg one.
    url = backend.url + ("?connect_timeout=10" if reader == "sqlalchemy" else "")
    env["ZOS_DATABASE_URL"] = url
    try:
        for command in (("db", "status"), ("db", "migrate"), ("db", "migrate", "--dry-run")):
            result = run_cli(*command, env=env)
            assert result.exit_code == 2, (command, result.stdout, result.stderr)
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
            assert "schema app first" in lines[0] and "schema public" in lines[0], lines[0]
            assert "set database.schema" in lines[0], lines[0]
        with pytest.raises(ConfigError, match=r"set database\.schema to public"):
            ensure_schema_current(backend.settings(folder, url=url))
        assert tables_in(backend, "app") == set()
        # Named, the history is found again where it is.
        named = run_cli("db", "status", env=env | {"ZOS_DATABASE__SCHEMA": "public"})
        assert "Current version: 1" in named.stdout, named.stdout + named.stderr
    finally:
        engine = create_engine(backend.url)
        with engine.begin() as conn:
            conn.execute(text(f"ALTER ROLE CURRENT_USER IN DATABASE {database} RESET ALL"))
        engine.dispose()
