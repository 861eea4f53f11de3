"""Issue 10 break: PostgreSQL rehearsals that say the opposite of what the real run does.

Each migration of a real run commits on its own; a rehearsal runs them all in one transaction.
Whatever only a commit does (an enum value becoming usable, deferred triggers firing, deferred
constraints being checked) must not make the rehearsal disagree with the real run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Backend, MakeMigrations, _backend, migration, run_cli


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[Backend]:
    yield from _backend("postgresql", tmp_path)


def test_a_rehearsal_does_not_fail_a_migration_that_uses_an_enum_value_added_by_the_one_before(
    pg: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(
        {
            "001_mood.py": migration(
                1,
                "Mood",
                "conn.execute(text(\"CREATE TYPE mood AS ENUM ('sad', 'ok')\"))\n"
                "conn.execute(text('CREATE TABLE people (id INTEGER PRIMARY KEY, m mood)'))\n"
                "conn.execute(text(\"INSERT INTO people VALUES (1, 'ok')\"))",
            ),
            "002_happy.py": migration(
                2, "Add happy", "conn.execute(text(\"ALTER TYPE mood ADD VALUE 'happy'\"))"
            ),
            "003_use.py": migration(
                3, "Use happy", "conn.execute(text(\"UPDATE people SET m = 'happy'\"))"
            ),
        }
    )
    env = pg.env(folder)
    assert run_cli("db", "migrate", "--target", "1", env=env).exit_code == 0
    rehearsal = run_cli("db", "migrate", "--dry-run", env=env)
    # The real run applies both (checked below); the rehearsal must not call 003 FAILED.
    real = run_cli("db", "migrate", env=env)
    assert real.exit_code == 0, real.stderr
    assert "FAILED" not in rehearsal.stdout, rehearsal.stdout
    assert rehearsal.exit_code == 0, rehearsal.stderr
    # 002 itself ran; what follows it cannot be rehearsed in the same transaction.
    assert "002: Add happy (" in rehearsal.stdout, rehearsal.stdout
    assert "003: Use happy (not rehearsed: follows 002, which cannot be rehearsed)" in (
        rehearsal.stdout
    )


ADD_HAPPY_IN_A_DO_BLOCK = """
verb = "ADD" + " VALUE"
conn.execute(text("DO $$ BEGIN EXECUTE 'ALTER TYPE mood " + verb + " ''happy'' '; END $$"))
"""


def test_a_rehearsal_stops_after_an_enum_value_added_by_statements_the_source_does_not_spell(
    pg: Backend, make_migrations: MakeMigrations
) -> None:
    # Seen on the connection, not in the source: the statement is built at run time and sent
    # inside a DO block.
    folder = make_migrations(
        {
            "001_mood.py": migration(
                1, "Mood", "conn.execute(text(\"CREATE TYPE mood AS ENUM ('sad', 'ok')\"))"
            ),
            "002_happy.py": migration(2, "Add happy", ADD_HAPPY_IN_A_DO_BLOCK),
            "003_use.py": migration(3, "Use happy", "conn.execute(text(\"SELECT 'happy'::mood\"))"),
        }
    )
    env = pg.env(folder)
    assert run_cli("db", "migrate", "--target", "1", env=env).exit_code == 0
    rehearsal = run_cli("db", "migrate", "--dry-run", env=env)
    assert "FAILED" not in rehearsal.stdout, rehearsal.stdout
    assert "003: Use happy (not rehearsed: follows 002" in rehearsal.stdout, rehearsal.stdout
    assert rehearsal.exit_code == 0, rehearsal.stderr
    real = run_cli("db", "migrate", env=env)
    assert real.exit_code == 0, real.stderr


DEFERRED_BASE = (
    "conn.execute(text('CREATE TABLE parent (id INTEGER PRIMARY KEY)'))\n"
    "conn.execute(text('CREATE TABLE child (id INTEGER PRIMARY KEY, p INTEGER"
    " REFERENCES parent DEFERRABLE INITIALLY DEFERRED)'))\n"
    "conn.execute(text('INSERT INTO parent VALUES (1)'))"
)


def test_a_rehearsal_does_not_fail_an_alter_after_a_migration_that_left_deferred_checks(
    pg: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(
        {
            "001_base.py": migration(1, "Base", DEFERRED_BASE),
            "002_rows.py": migration(
                2, "Rows", "conn.execute(text('INSERT INTO child VALUES (1, 1)'))"
            ),
            "003_alter.py": migration(
                3, "Alter child", "conn.execute(text('ALTER TABLE child ADD COLUMN note TEXT'))"
            ),
        }
    )
    env = pg.env(folder)
    assert run_cli("db", "migrate", "--target", "1", env=env).exit_code == 0
    rehearsal = run_cli("db", "migrate", "--dry-run", env=env)
    real = run_cli("db", "migrate", env=env)
    assert real.exit_code == 0, real.stderr
    assert "FAILED" not in rehearsal.stdout, rehearsal.stdout
    assert rehearsal.exit_code == 0, rehearsal.stderr


def test_a_rehearsal_starts_each_migration_with_its_constraints_deferred_as_declared(
    pg: Backend, make_migrations: MakeMigrations
) -> None:
    # 003 inserts the child before its parent, which only an INITIALLY DEFERRED constraint
    # allows: checking 002's rows as its commit would must not leave 003 checked at once.
    folder = make_migrations(
        {
            "001_base.py": migration(1, "Base", DEFERRED_BASE),
            "002_rows.py": migration(
                2, "Rows", "conn.execute(text('INSERT INTO child VALUES (1, 1)'))"
            ),
            "003_child_first.py": migration(
                3,
                "Child first",
                "conn.execute(text('INSERT INTO child VALUES (2, 2)'))\n"
                "conn.execute(text('INSERT INTO parent VALUES (2)'))",
            ),
        }
    )
    env = pg.env(folder)
    assert run_cli("db", "migrate", "--target", "1", env=env).exit_code == 0
    rehearsal = run_cli("db", "migrate", "--dry-run", env=env)
    real = run_cli("db", "migrate", env=env)
    assert real.exit_code == 0, real.stderr
    assert "FAILED" not in rehearsal.stdout, rehearsal.stdout
    assert rehearsal.exit_code == 0, rehearsal.stderr


def test_a_rehearsal_fails_a_migration_whose_deferred_constraint_fails_at_commit(
    pg: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(
        {
            "001_base.py": migration(1, "Base", DEFERRED_BASE),
            "002_orphan.py": migration(
                2, "Orphan", "conn.execute(text('INSERT INTO child VALUES (2, 99)'))"
            ),
        }
    )
    env = pg.env(folder)
    assert run_cli("db", "migrate", "--target", "1", env=env).exit_code == 0
    rehearsal = run_cli("db", "migrate", "--dry-run", env=env)
    real = run_cli("db", "migrate", env=env)
    assert real.exit_code == 1, real.stderr  # the real run fails at 002's commit
    assert "002: Orphan FAILED" in rehearsal.stdout, rehearsal.stdout
    assert rehearsal.exit_code == 1


def test_a_migration_whose_deferred_constraint_fails_at_commit_is_named_in_the_error(
    pg: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(
        {
            "001_base.py": migration(1, "Base", DEFERRED_BASE),
            "002_orphan.py": migration(
                2, "Orphan", "conn.execute(text('INSERT INTO child VALUES (2, 99)'))"
            ),
        }
    )
    result = run_cli("db", "migrate", env=pg.env(folder))
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: 002_orphan.py failed: insert or update on table"), lines[0]
    assert lines[0].endswith(
        "it was rolled back and the database is unchanged by it; the database is at version 1"
    ), lines[0]


def test_a_rehearsal_that_cannot_get_a_lock_does_not_claim_the_real_run_would_stop(
    pg: Backend, make_migrations: MakeMigrations
) -> None:
    from tests.integration.test_lock_waits import reader_in_transaction, widgets_migrations

    folder = widgets_migrations(make_migrations, timeout=1, retries=3)
    env = pg.env(folder)
    assert run_cli("db", "migrate", "--target", "1", env=env).exit_code == 0
    with reader_in_transaction(pg):
        rehearsal = run_cli("db", "migrate", "--dry-run", env=env)
    # The real run would wait and try again (DDL_LOCK_RETRIES = 3); what the rehearsal knows is
    # that the lock was held, by whom, not that 002 would stop the run.
    assert "the real run would stop there" not in rehearsal.stderr, rehearsal.stderr
    assert "waiting for a lock on widgets" in rehearsal.stdout + rehearsal.stderr
    assert "FAILED" not in rehearsal.stdout, rehearsal.stdout
    # Nothing was proven about 002, so a deploy gate must not pass: exit 1, one line that
    # names the lock and says what the real run would do instead.
    lines = rehearsal.stderr.strip().splitlines()
    assert rehearsal.exit_code == 1
    assert len(lines) == 1, rehearsal.stderr
    assert "waiting for a lock on widgets (held by pid" in lines[0], lines[0]
    assert "the real run would wait up to 1 s for it, 4 times" in lines[0], lines[0]
