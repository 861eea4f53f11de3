"""What the commit of a migration's transaction raises (a deferred constraint, a trigger on
the record) fails that migration with one line naming it, the reason and the state it left,
like an error raised by its own code; on every backend, whether the database checks at the
statement (MariaDB), before the commit (SQLite's foreign-key check) or at the commit
(PostgreSQL's deferred constraints)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.conftest import Backend, MakeMigrations, _backend, migration, run_cli


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[Backend]:
    yield from _backend("postgresql", tmp_path)


def base(backend: Backend) -> str:
    """001: a parent with one row and a child whose foreign key is checked at commit where
    the database can defer it (MariaDB cannot: it checks each statement)."""
    deferred = "" if backend.name == "mariadb" else " DEFERRABLE INITIALLY DEFERRED"
    return (
        "conn.execute(text('CREATE TABLE parent (id INTEGER PRIMARY KEY)'))\n"
        "conn.execute(text('CREATE TABLE child (id INTEGER PRIMARY KEY, p INTEGER"
        f" REFERENCES parent (id){deferred})'))\n"
        "conn.execute(text('INSERT INTO parent VALUES (1), (2), (3)'))"
    )


def rows(backend: Backend, table: str) -> int:
    engine = backend.engine()
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one())
    finally:
        engine.dispose()


# What a migration that changed nothing lasting left: rolled back with its record where the
# schema is transactional; nothing changed and nothing marked where DDL commits at once.
LEFT_NOTHING = {
    "sqlite": "it was rolled back and the database is unchanged by it",
    "postgresql": "it was rolled back and the database is unchanged by it",
    "mariadb": "nothing was changed and nothing needs repair",
}


def test_a_migration_whose_foreign_key_fails_at_commit_is_named_with_the_state_it_left(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(
        {
            "001_base.py": migration(1, "Base", base(backend)),
            "002_orphan.py": migration(
                2,
                "Orphan",
                "conn.execute(text('INSERT INTO child VALUES (1, 1)'))\n"
                "conn.execute(text('INSERT INTO child VALUES (2, 99)'))",
            ),
        }
    )
    env = backend.env(folder)
    result = run_cli("db", "migrate", env=env)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: 002_orphan.py failed: "), lines[0]
    assert lines[0].endswith(f"{LEFT_NOTHING[backend.name]}; the database is at version 1")
    assert rows(backend, "child") == 0
    status = run_cli("db", "status", env=env)
    assert "Current version: 1\n" in status.stdout
    assert "nfinished" not in status.stdout, status.stdout


BATCH_ORPHANS = """
from sqlalchemy import text

from zos.migrator.backfill import Batches

VERSION = 2
DESCRIPTION = "Children for each parent"
BATCHES = Batches(table="parent", key="id", size=1)


def backfill(conn, low, high):
    parent = high if high < 3 else 99  # the third batch points nowhere
    conn.execute(text("INSERT INTO child VALUES (:id, :p)"), {"id": high, "p": parent})
"""


def test_a_backfill_batch_whose_foreign_key_fails_at_commit_is_rolled_back_alone(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(
        {"001_base.py": migration(1, "Base", base(backend)), "002_fill.py": BATCH_ORPHANS}
    )
    result = run_cli("db", "migrate", env=backend.env(folder))
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: 002_fill.py failed: "), lines[0]
    assert "the batch of keys above 2 was rolled back, earlier batches are kept" in lines[0]
    assert rows(backend, "child") == 2


# A constraint trigger on zos's own table that fails when a migration is recorded finished:
# the commit of the record itself fails, after the migration's work committed.
REFUSE_FINISHING = (
    "conn.execute(text('CREATE TABLE made (id INTEGER)'))\n"
    'conn.execute(text("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS '
    "$$ BEGIN RAISE EXCEPTION 'the record is refused'; END $$\"))\n"
    "conn.execute(text('CREATE CONSTRAINT TRIGGER refuse AFTER UPDATE ON _schema_version "
    "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse()'))"
)


def test_a_marked_migration_whose_final_record_fails_at_commit_is_named_and_left_unfinished(
    pg: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(
        {
            "001_base.py": migration(1, "Base"),
            "002_refuse.py": migration(2, "Refuse", REFUSE_FINISHING) + "\nTRANSACTIONAL = False\n",
        }
    )
    env = pg.env(folder)
    result = run_cli("db", "migrate", env=env)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: 002_refuse.py failed: the record is refused; "), lines[0]
    assert "marked unfinished" in lines[0]
    assert lines[0].endswith("the database is at version 1")
    status = run_cli("db", "status", env=env)
    assert "Current version: 1\n" in status.stdout
    assert "nfinished migration: 2" in status.stdout, status.stdout
