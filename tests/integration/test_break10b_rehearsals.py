"""Issue 10 second break: a PostgreSQL rehearsal says what the real run would do. The real run
gives each migration a fresh session (temporary tables, prepared statements and cursors of the
one before are gone) and commits between migrations; the rehearsal must not pass or fail a
migration for what only the rehearsal's one transaction and one session leave behind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Backend, MakeMigrations, _backend, migration, run_cli


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[Backend]:
    yield from _backend("postgresql", tmp_path)


BASE = migration(
    1,
    "Widgets",
    "conn.execute(text('CREATE TABLE widgets (id INTEGER PRIMARY KEY, name TEXT)'))\n"
    "conn.execute(text(\"INSERT INTO widgets VALUES (1, 'a'), (2, 'b')\"))",
)

# Two migrations written alike, each with its own scratch object of the same name: the real
# run's session reset (DISCARD TEMP, DEALLOCATE ALL, CLOSE ALL) lets the second make it again.
SAME_SCRATCH_TWICE = {
    "temporary_table": (
        "conn.execute(text('CREATE TEMPORARY TABLE staging AS SELECT * FROM widgets'))"
    ),
    "prepared_statement": "conn.execute(text('PREPARE pick AS SELECT name FROM widgets'))",
    "cursor_with_hold": (
        "conn.execute(text('DECLARE walk CURSOR WITH HOLD FOR SELECT name FROM widgets'))"
    ),
}


@pytest.mark.parametrize("body", SAME_SCRATCH_TWICE.values(), ids=SAME_SCRATCH_TWICE.keys())
def test_a_rehearsal_does_not_fail_a_migration_that_makes_the_scratch_object_the_one_before_made(
    pg: Backend, make_migrations: MakeMigrations, body: str
) -> None:
    folder = make_migrations(
        {
            "001_widgets.py": BASE,
            "002_first.py": migration(2, "First pass", body),
            "003_second.py": migration(3, "Second pass", body),
        }
    )
    env = pg.env(folder)
    assert run_cli("db", "migrate", "--target", "1", env=env).exit_code == 0
    rehearsal = run_cli("db", "migrate", "--dry-run", env=env)
    real = run_cli("db", "migrate", env=env)
    assert real.exit_code == 0, real.stderr  # the real run applies both
    assert "FAILED" not in rehearsal.stdout, rehearsal.stdout
    assert rehearsal.exit_code == 0, rehearsal.stderr


def test_a_rehearsal_fails_a_migration_that_uses_a_temporary_table_of_the_one_before(
    pg: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(
        {
            "001_widgets.py": BASE,
            "002_stage.py": migration(
                2,
                "Stage",
                "conn.execute(text('CREATE TEMPORARY TABLE staging AS SELECT * FROM widgets'))",
            ),
            "003_use.py": migration(
                3, "Use the stage", "conn.execute(text('SELECT COUNT(*) FROM staging'))"
            ),
        }
    )
    env = pg.env(folder)
    assert run_cli("db", "migrate", "--target", "1", env=env).exit_code == 0
    rehearsal = run_cli("db", "migrate", "--dry-run", env=env)
    real = run_cli("db", "migrate", env=env)
    assert real.exit_code == 1  # 003 finds no staging table in its fresh session
    assert 'relation "staging" does not exist' in real.stderr, real.stderr
    # A rehearsal that passes what the real run fails is the worst kind of wrong.
    assert rehearsal.exit_code == 1, rehearsal.stdout
    assert "003: Use the stage FAILED" in rehearsal.stdout, rehearsal.stdout


def test_a_rehearsal_stops_after_an_enum_value_added_by_a_function_the_migration_calls(
    pg: Backend, make_migrations: MakeMigrations
) -> None:
    # The statement that adds the value runs inside a server function defined earlier: the
    # SQL the migration sends never spells ALTER TYPE. The catalog (pg_enum rows this
    # transaction wrote) says it all the same.
    folder = make_migrations(
        {
            "001_mood.py": migration(
                1,
                "Mood",
                "conn.execute(text(\"CREATE TYPE mood AS ENUM ('sad', 'ok')\"))\n"
                'conn.execute(text("CREATE FUNCTION add_mood(v text) RETURNS void'
                " LANGUAGE plpgsql AS $f$ BEGIN"
                " EXECUTE format('ALTER TYPE mood ADD VALUE %L', v); END $f$\"))",
            ),
            "002_happy.py": migration(
                2, "Add happy", "conn.execute(text(\"SELECT add_mood('happy')\"))"
            ),
            "003_use.py": migration(3, "Use happy", "conn.execute(text(\"SELECT 'happy'::mood\"))"),
        }
    )
    env = pg.env(folder)
    assert run_cli("db", "migrate", "--target", "1", env=env).exit_code == 0
    rehearsal = run_cli("db", "migrate", "--dry-run", env=env)
    real = run_cli("db", "migrate", env=env)
    assert real.exit_code == 0, real.stderr
    assert "FAILED" not in rehearsal.stdout, rehearsal.stdout
    assert "003: Use happy (not rehearsed: follows 002" in rehearsal.stdout, rehearsal.stdout
    assert rehearsal.exit_code == 0, rehearsal.stderr
