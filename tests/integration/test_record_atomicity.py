"""A migration and its ``_schema_version`` row commit together: when writing the row fails, the
migration's changes are gone too. Deterministic: a trigger refuses the row, no process is killed.
"""

from __future__ import annotations

from sqlalchemy import inspect, text

from tests.conftest import Backend, MakeMigrations, migration, run_cli

# Refuse the row that says version 2 is applied. MariaDB writes version 2 as `started` before its
# body (DDL cannot roll back there), so the refusal hits the UPDATE to `applied`, which commits
# with the body's row changes; SQLite and PostgreSQL insert the row `applied` in the body's
# own transaction.
REFUSE_VERSION_2 = {
    "sqlite": [
        "CREATE TRIGGER refuse_v2 BEFORE INSERT ON _schema_version WHEN NEW.version = 2 "
        "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_v2() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.version = 2 THEN RAISE EXCEPTION 'refused by the test'; END IF; "
        "RETURN NEW; END $$",
        "CREATE TRIGGER refuse_v2 BEFORE INSERT ON _schema_version "
        "FOR EACH ROW EXECUTE FUNCTION refuse_v2()",
    ],
    "mariadb": [
        "CREATE TRIGGER refuse_v2 BEFORE UPDATE ON _schema_version FOR EACH ROW BEGIN "
        "IF NEW.version = 2 AND NEW.state = 'applied' THEN "
        "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused by the test'; END IF; END"
    ],
}

CREATE_THINGS = """
conn.execute(text("CREATE TABLE things (id INTEGER PRIMARY KEY, note VARCHAR(20))"))
conn.execute(text("INSERT INTO things (id, note) VALUES (1, 'kept')"))
"""
CHANGE_THINGS = """
conn.execute(text("INSERT INTO things (id, note) VALUES (2, 'added')"))
conn.execute(text("UPDATE things SET note = 'changed' WHERE id = 1"))
"""
CREATE_EXTRA = """
conn.execute(text("CREATE TABLE extra (id INTEGER PRIMARY KEY)"))
"""


def test_a_migration_whose_version_row_cannot_be_written_leaves_no_change(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    # A CREATE TABLE as well where DDL is transactional; on MariaDB only the row changes are.
    body = CHANGE_THINGS + ("" if backend.name == "mariadb" else CREATE_EXTRA)
    folder = make_migrations(
        {
            "001_things.py": migration(1, "Things", CREATE_THINGS),
            "002_change.py": migration(2, "Change things", body),
        }
    )
    env = backend.env(folder)
    assert run_cli("db", "migrate", "--target", "1", env=env).exit_code == 0
    engine = backend.engine()
    with engine.begin() as conn:
        for statement in REFUSE_VERSION_2[backend.name]:
            conn.execute(text(statement))

    result = run_cli("db", "migrate", env=env)

    assert result.exit_code == 1
    # The record fails outside the migration's code, yet the line names 002 and its state.
    assert result.stderr.startswith("Error: 002_change.py failed: ")
    assert "refused by the test" in result.stderr
    assert result.stderr.rstrip().endswith("the database is at version 1"), result.stderr
    assert len(result.stderr.splitlines()) == 1
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, note FROM things ORDER BY id")).all()
        versions = conn.execute(text("SELECT version, state FROM _schema_version")).all()
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert [tuple(r) for r in rows] == [(1, "kept")]
    assert "extra" not in tables
    # Nothing of 002 was kept (on MariaDB its row changes rolled back with the record), so
    # nothing is left to repair either.
    assert sorted(tuple(v) for v in versions) == [(1, "applied")]


def test_a_fresh_database_whose_first_migration_fails_is_left_empty_where_ddl_rolls_back(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    # The version table is created in the first migration's own transaction: one commit for a
    # fresh database, and nothing at all left behind when that migration fails.
    folder = make_migrations(
        {
            "001_things.py": migration(
                1, "Things", CREATE_THINGS + "\nraise RuntimeError('001 breaks')"
            )
        }
    )
    env = backend.env(folder)
    result = run_cli("db", "migrate", env=env)
    assert result.exit_code == 1
    assert "001_things.py failed: 001 breaks" in result.stderr
    engine = backend.engine()
    try:
        left = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    if backend.name == "mariadb":
        # DDL commits at once there: the table it created is kept, and so is its mark.
        assert {"_schema_version", "things"} <= left
        assert "is marked unfinished" in result.stderr
        return
    assert left == set()
    status = run_cli("db", "status", env=env)
    assert status.exit_code == 0 and "Problems" not in status.stderr, status.stderr
    fixed = make_migrations({"001_things.py": migration(1, "Things", CREATE_THINGS)})
    assert run_cli("db", "migrate", env=backend.env(fixed)).exit_code == 0
