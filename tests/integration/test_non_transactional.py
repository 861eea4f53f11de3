"""Migrations that declare ``TRANSACTIONAL = False`` run outside a transaction and are recorded
as started before and applied after, so an interruption cannot pass unnoticed."""

from __future__ import annotations

from sqlalchemy import inspect, text

from tests.conftest import Backend, MakeMigrations, migration, run_cli

CREATE_T = "conn.execute(text('CREATE TABLE t (id INTEGER PRIMARY KEY, x INTEGER)'))"

OUTSIDE_A_TRANSACTION = {
    # Each of these refuses to run inside a transaction block on its database.
    "sqlite": "VACUUM",
    "postgresql": "CREATE INDEX CONCURRENTLY ix_t_x ON t (x)",
    "mariadb": "CREATE INDEX ix_t_x ON t (x)",
}


def states(backend: Backend) -> dict[int, str]:
    engine = backend.engine()
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT version, state FROM _schema_version"))
        found = {row.version: row.state for row in rows}
    engine.dispose()
    return found


def test_a_non_transactional_migration_runs_and_is_recorded_as_applied(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    statement = OUTSIDE_A_TRANSACTION[backend.name]
    folder = make_migrations(
        {
            "001_t.py": migration(1, "Create t", CREATE_T),
            "002_outside.py": migration(2, "Outside", f"conn.execute(text({statement!r}))")
            + "\nTRANSACTIONAL = False\n",
            "003_after.py": migration(
                3, "After", "conn.execute(text('INSERT INTO t (id, x) VALUES (1, 2)'))"
            ),
        }
    )
    result = run_cli("db", "migrate", env=backend.env(folder))
    assert result.exit_code == 0, result.stderr
    assert "Migrated from version 0 to 3" in result.stdout
    assert states(backend) == {1: "applied", 2: "applied", 3: "applied"}
    if backend.name != "sqlite":
        engine = backend.engine()
        assert "ix_t_x" in {ix["name"] for ix in inspect(engine).get_indexes("t")}
        engine.dispose()


def test_a_failing_non_transactional_migration_is_left_marked_unfinished(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    body = (
        "conn.execute(text('CREATE TABLE made_before_failing (id INTEGER)'))\n"
        "raise ValueError('no')"
    )
    folder = make_migrations(
        {
            "001_t.py": migration(1, "Create t", CREATE_T),
            "002_fails.py": migration(2, "Fails", body) + "\nTRANSACTIONAL = False\n",
        }
    )
    result = run_cli("db", "migrate", env=backend.env(folder))
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: 002_fails.py failed: no; ")
    assert "may be partly applied" in result.stderr
    assert states(backend) == {1: "applied", 2: "started"}
    status = run_cli("db", "status", env=backend.env(folder))
    assert status.exit_code == 1
    assert "Current version: 1" in status.stdout
    assert "002_fails.py started at" in status.stderr and "never finished" in status.stderr
