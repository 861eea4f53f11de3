"""Honest rehearsals (issue 10): a backfill is rehearsed on its first batches only, with the
whole table's time projected, and a rehearsal stops at the first migration it cannot rehearse
instead of reporting false failures after it."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import exc, text

from tests.conftest import Backend, MakeMigrations, _backend, migration, run_cli
from tests.integration.test_backfill import ROWS, counts, folder_for

BATCH = 100


@pytest.fixture(params=["sqlite", "postgresql"])
def rehearsable(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """The databases whose dry run rehearses (MariaDB's shows the plan only)."""
    yield from _backend(request.param, tmp_path)


def test_a_backfill_is_rehearsed_on_its_first_batches_with_a_projected_time(
    rehearsable: Backend, make_migrations: MakeMigrations
) -> None:
    backend = rehearsable
    folder = folder_for(make_migrations, size=BATCH)
    assert run_cli("db", "migrate", "--target", "1", env=backend.env(folder)).exit_code == 0
    result = run_cli("db", "migrate", "--dry-run", env=backend.env(folder))
    assert result.exit_code == 0, result.stderr
    assert re.search(
        rf"  002: Count every item once \(\d+ ms; backfill rehearsed on its first {3 * BATCH} "
        rf"of {ROWS:,} rows; the whole table would take about \d+\.\d s\)",
        result.stdout,
    ), result.stdout
    assert counts(backend) == {0: ROWS}  # nothing kept


def test_a_postgresql_backfill_rehearsal_leaves_the_rest_of_the_table_to_writers(
    make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    # A writer that gives up after 100 ms on any lock keeps updating the table's last row
    # while the dry run rehearses a slow backfill: the rehearsal never locks that row.
    for backend in _backend("postgresql", tmp_path):
        folder = folder_for(make_migrations, size=BATCH, pause=0.3)
        env = backend.env(folder)
        assert run_cli("db", "migrate", "--target", "1", env=env).exit_code == 0
        engine = backend.engine()
        with engine.connect() as conn:
            last = conn.execute(text("SELECT MAX(id) FROM items")).scalar_one()
        dry = subprocess.Popen(
            [sys.executable, "-m", "zos", "db", "migrate", "--dry-run"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        updates, refused = 0, 0
        with engine.connect() as writer:
            writer.exec_driver_sql("SET lock_timeout = '100ms'")
            writer.commit()
            while dry.poll() is None:
                try:
                    writer.execute(text("UPDATE items SET label = 'w' WHERE id = :i"), {"i": last})
                    writer.commit()
                    updates += 1
                except exc.OperationalError:
                    writer.rollback()
                    refused += 1
                time.sleep(0.02)
        out, err = dry.communicate()
        engine.dispose()
        assert dry.returncode == 0, err
        assert "backfill rehearsed on its first 300" in out
        assert updates > 0 and refused == 0


OUTSIDE = {
    "sqlite": "CREATE INDEX ix_t_x ON t (x)",
    "postgresql": "CREATE INDEX CONCURRENTLY ix_t_x ON t (x)",
}


def test_a_rehearsal_stops_at_a_migration_it_cannot_rehearse(
    rehearsable: Backend, make_migrations: MakeMigrations
) -> None:
    backend = rehearsable
    folder = make_migrations(
        {
            "001_t.py": migration(
                1, "Create t", "conn.execute(text('CREATE TABLE t (id INTEGER, x INTEGER)'))"
            ),
            "002_index.py": migration(
                2, "Index x", f"conn.execute(text({OUTSIDE[backend.name]!r}))"
            )
            + "\nTRANSACTIONAL = False\n",
            "003_drop.py": migration(
                3, "Drop the index", "conn.execute(text('DROP INDEX ix_t_x'))"
            ),
        }
    )
    env = backend.env(folder)
    assert run_cli("db", "migrate", "--target", "1", env=env).exit_code == 0
    result = run_cli("db", "migrate", "--dry-run", env=env)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "  002: Index x (runs outside a transaction; not rehearsed)" in result.stdout
    assert (
        "  003: Drop the index (not rehearsed: follows 002, which cannot be rehearsed)"
        in result.stdout
    )
    assert "FAILED" not in result.stdout
    real = run_cli("db", "migrate", env=env)
    assert real.exit_code == 0, real.stderr


def test_a_postgresql_rehearsal_gives_up_a_lock_wait_like_the_real_run(
    make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    from tests.integration.test_lock_waits import reader_in_transaction, widgets_migrations

    for backend in _backend("postgresql", tmp_path):
        folder = widgets_migrations(make_migrations)
        env = backend.env(folder) | {"ZOS_DATABASE__DDL_LOCK_TIMEOUT_SECONDS": "1"}
        assert run_cli("db", "migrate", "--target", "1", env=env).exit_code == 0
        with reader_in_transaction(backend):
            result = run_cli("db", "migrate", "--dry-run", env=env)
        # Given up after the bound, as one try of the real run; not a failure of 002.
        assert result.exit_code == 1
        assert re.search(
            r"  002: Add a note LOCK BUSY after \d+ ms: waiting for a lock on widgets \(held by",
            result.stdout,
        ), result.stdout


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[Backend]:
    yield from _backend("postgresql", tmp_path)


WIDGETS = migration(1, "Widgets", "conn.execute(text('CREATE TABLE widgets (id INTEGER)'))")
# Fails when the session still holds a session-level advisory lock the migration before took:
# the real run's next migration starts in a session that holds none.
NO_ADVISORY_LOCK_LEFT = (
    "held = conn.execute(text(\"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
    ' AND pid = pg_backend_pid()")).scalar()\n'
    "if held:\n"
    "    raise RuntimeError(f'{held} advisory locks left by the migration before')"
)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param(
            "conn.execute(text('CREATE TEMPORARY TABLE staging (id INTEGER) ON COMMIT DROP'))",
            "conn.execute(text('CREATE TEMPORARY TABLE staging (id INTEGER) ON COMMIT DROP'))",
            id="temporary_table_on_commit_drop",
        ),
        pytest.param(
            "conn.execute(text(\"CREATE TYPE mood AS ENUM ('sad', 'ok')\"))",
            "conn.execute(text(\"SELECT 'ok'::mood\"))",
            id="enum_type_made_with_its_values",
        ),
        pytest.param(
            "conn.execute(text('SELECT pg_advisory_lock(4711)'))",
            NO_ADVISORY_LOCK_LEFT,
            id="session_advisory_lock",
        ),
    ],
)
def test_a_postgresql_rehearsal_goes_on_where_the_real_run_starts_the_next_migration_afresh(
    pg: Backend, make_migrations: MakeMigrations, first: str, second: str
) -> None:
    folder = make_migrations(
        {
            "001_widgets.py": WIDGETS,
            "002_first.py": migration(2, "First", first),
            "003_second.py": migration(3, "Second", second),
        }
    )
    env = pg.env(folder)
    assert run_cli("db", "migrate", "--target", "1", env=env).exit_code == 0
    rehearsal = run_cli("db", "migrate", "--dry-run", env=env)
    real = run_cli("db", "migrate", env=env)
    assert real.exit_code == 0, real.stderr
    assert re.search(r"  003: Second \(\d+ ms\)", rehearsal.stdout), rehearsal.stdout
    assert rehearsal.exit_code == 0, rehearsal.stdout + rehearsal.stderr


ADDS_HAPPY = {
    # The value is new to a type the database had, or to one the same migration made: either
    # way PostgreSQL lets only a later transaction use it.
    "type_of_before": "conn.execute(text(\"ALTER TYPE mood ADD VALUE 'happy'\"))",
    "type_made_alongside": (
        "conn.execute(text(\"CREATE TYPE feeling AS ENUM ('meh')\"))\n"
        "conn.execute(text(\"ALTER TYPE feeling ADD VALUE 'happy'\"))"
    ),
}


@pytest.mark.parametrize("body", ADDS_HAPPY.values(), ids=ADDS_HAPPY.keys())
def test_a_postgresql_rehearsal_stops_after_an_enum_value_added_and_names_it(
    pg: Backend, make_migrations: MakeMigrations, body: str
) -> None:
    folder = make_migrations(
        {
            "001_mood.py": migration(
                1, "Mood", "conn.execute(text(\"CREATE TYPE mood AS ENUM ('sad', 'ok')\"))"
            ),
            "002_happy.py": migration(2, "Happy", body),
            "003_use.py": migration(3, "Use", "conn.execute(text('SELECT 1'))"),
        }
    )
    env = pg.env(folder)
    assert run_cli("db", "migrate", "--target", "1", env=env).exit_code == 0
    rehearsal = run_cli("db", "migrate", "--dry-run", env=env)
    assert rehearsal.exit_code == 0, rehearsal.stdout + rehearsal.stderr
    assert re.search(r"it adds the enum value 'happy' to (mood|feeling)", rehearsal.stdout), (
        rehearsal.stdout
    )
    assert "003: Use (not rehearsed: follows 002" in rehearsal.stdout, rehearsal.stdout
