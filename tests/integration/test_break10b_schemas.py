"""Issue 10 second break: the schema that holds a PostgreSQL database's history is the one the
runs before recorded it in, whatever a migration did to the database's default search path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import make_url

from tests.conftest import Backend, MakeMigrations, _backend, migration, run_cli


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[Backend]:
    yield from _backend("postgresql", tmp_path)


def test_a_migration_that_puts_an_empty_schema_first_on_the_path_does_not_restart_the_history(
    pg: Backend, make_migrations: MakeMigrations
) -> None:
    # 002 gives the database a default search path with a new schema before public (a common
    # multi-tenant step). The run that applied it recorded it in public; the next run's
    # session starts with app first, finds no _schema_version there, and must not read the
    # database as empty while public's history is on its own search path.

    database = make_url(pg.url).database
    folder = make_migrations(
        {
            "001_widgets.py": migration(
                1,
                "Widgets",
                "conn.execute(text('CREATE TABLE widgets (id INTEGER PRIMARY KEY)'))\n"
                "conn.execute(text('CREATE SCHEMA app'))",
            ),
            "002_path.py": migration(
                2,
                "Tenant path",
                f"conn.execute(text('ALTER DATABASE {database} SET search_path = app, public'))",
            ),
            "003_gadgets.py": migration(
                3, "Gadgets", "conn.execute(text('CREATE TABLE gadgets (id INTEGER PRIMARY KEY)'))"
            ),
        }
    )
    env = pg.env(folder)
    assert run_cli("db", "migrate", "--target", "2", env=env).exit_code == 0
    status = run_cli("db", "status", env=env)
    assert "Current version: 0" not in status.stdout, status.stdout
    again = run_cli("db", "migrate", env=env)
    assert "Applying 001" not in again.stdout, again.stdout + again.stderr
