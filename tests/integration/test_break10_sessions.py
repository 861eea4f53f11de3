"""Issue 10 break: a migration's session changes must not reach the next migration, or the
recorder, on MariaDB as on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.conftest import Backend, MakeMigrations, _backend, migration, run_cli


@pytest.fixture
def mariadb(tmp_path: Path) -> Iterator[Backend]:
    yield from _backend("mariadb", tmp_path)


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[Backend]:
    yield from _backend("postgresql", tmp_path)


LOOK = (
    "conn.execute(text('CREATE TABLE seen (k VARCHAR(40), v VARCHAR(200))'))\n"
    "for k in ('@@sql_mode', '@@time_zone', '@@max_statement_time', '@leak'):\n"
    "    v = conn.execute(text('SELECT ' + k)).scalar()\n"
    "    conn.execute(text('INSERT INTO seen VALUES (:k, :v)'), {'k': k, 'v': str(v)})"
)


def seen(backend: Backend) -> dict[str, str]:
    engine = backend.engine()
    try:
        with engine.connect() as conn:
            return {row.k: row.v for row in conn.execute(text("SELECT k, v FROM seen"))}
    finally:
        engine.dispose()


def test_mariadb_each_migration_starts_with_the_runners_session_variables(
    mariadb: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(
        {
            "001_noop.py": migration(1, "Nothing"),
            "002_look.py": migration(2, "Look", LOOK),
        }
    )
    env = mariadb.env(folder)
    # 002 alone: what the runner's session looks like.
    assert run_cli("db", "migrate", env=env).exit_code == 0
    alone = seen(mariadb)

    other = mariadb.sibling()
    changer = make_migrations(
        {
            "001_sets.py": migration(
                1,
                "Sets",
                "conn.execute(text(\"SET SESSION sql_mode = 'ANSI_QUOTES'\"))\n"
                "conn.execute(text(\"SET time_zone = '+09:00'\"))\n"
                "conn.execute(text('SET SESSION max_statement_time = 30'))\n"
                "conn.execute(text(\"SET @leak = 'leaked'\"))",
            ),
            "002_look.py": migration(2, "Look", LOOK),
        }
    )
    result = run_cli("db", "migrate", env=other.env(changer))
    assert result.exit_code == 0, result.stderr
    # The same migration sees the same session, whether or not another ran before it.
    assert seen(other) == alone


def test_a_migration_that_sets_role_fails_naming_itself(
    pg: Backend, make_migrations: MakeMigrations
) -> None:
    role = f"weak_{Path(pg.url).name[-12:]}"
    engine = pg.engine()
    with engine.connect() as conn:
        conn.execute(text(f"CREATE ROLE {role} NOLOGIN"))
        conn.commit()
    try:
        folder = make_migrations(
            {
                "001_base.py": migration(
                    1, "Base", "conn.execute(text('CREATE TABLE t (id INTEGER)'))"
                ),
                "002_role.py": migration(2, "Role", f"conn.execute(text('SET ROLE {role}'))"),
            }
        )
        result = run_cli("db", "migrate", env=pg.env(folder))
        lines = result.stderr.strip().splitlines()
        # Either the runner resets the role before recording (and 002 is applied), or 002
        # fails with a line that names it; never an anonymous "permission denied for table
        # _schema_version".
        if result.exit_code != 0:
            assert len(lines) == 1, result.stderr
            assert lines[0].startswith("Error: 002_role.py"), lines[0]
    finally:
        engine.dispose()
        admin = pg.engine()
        with admin.connect() as conn:
            conn.execute(text(f"DROP OWNED BY {role}"))
            conn.execute(text(f"DROP ROLE {role}"))
            conn.commit()
        admin.dispose()
