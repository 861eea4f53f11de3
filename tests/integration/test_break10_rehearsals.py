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
