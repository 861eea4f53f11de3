"""A migration cannot commit, roll back or close the transaction zos runs it in, through any
door; and one that tries is a failed migration with the truth about the state it left."""

from __future__ import annotations

import pytest

from tests.conftest import Backend, MakeMigrations, migration, run_cli
from tests.integration.processes import one_error_line, states, tables

FIRST_HALF = "conn.execute(text('CREATE TABLE first_half (id INTEGER)'))"
SECOND_HALF_FAILS = "conn.execute(text('SELECT * FROM no_such_table'))"

# Each way a migration's body could try to end its transaction, then carry on.
DOORS = {
    "sql-commit": "conn.execute(text('COMMIT'))",
    "sql-end": "conn.exec_driver_sql('END')",
    "sql-begin": "conn.exec_driver_sql('BEGIN')",
    "sql-rollback": "conn.execute(text('ROLLBACK'))",
    "sql-commit-after-comment": "conn.exec_driver_sql('/* done */ commit')",
    "sqlalchemy-commit": "conn.commit()",
    "sqlalchemy-rollback": "conn.rollback()",
    "pool-commit": "conn.connection.commit()",
    "dbapi-commit": "conn.connection.dbapi_connection.commit()",
    "dbapi-rollback": "conn.connection.dbapi_connection.rollback()",
    "transaction-object-commit": "conn.get_transaction().commit()",
}


def escaping(door: str, then: str) -> str:
    return "\n".join([FIRST_HALF, DOORS[door], then])


@pytest.mark.parametrize("door", sorted(DOORS))
def test_a_migration_cannot_end_its_own_transaction_by_any_door(
    backend: Backend, make_migrations: MakeMigrations, door: str
) -> None:
    folder = make_migrations({"001_escapes.py": migration(1, "Escapes", escaping(door, "pass"))})
    result = run_cli("db", "migrate", env=backend.env(folder))
    assert result.exit_code == 1, result.stdout
    line = one_error_line(result.stderr)
    assert line.startswith("Error: 001_escapes.py failed: ")
    if backend.name == "mariadb":
        # DDL commits at once there: the marker says so, and nothing claims otherwise.
        assert "marked unfinished" in line
        assert states(backend) == {1: "started"}
        return
    assert "rolled back and the database is unchanged" in line
    assert "first_half" not in tables(backend)
    assert states(backend) == {}


@pytest.mark.parametrize("door", ["sql-commit", "pool-commit", "dbapi-commit"])
def test_an_escape_followed_by_a_failure_is_not_half_committed(
    backend: Backend, make_migrations: MakeMigrations, door: str
) -> None:
    folder = make_migrations(
        {"001_escapes.py": migration(1, "Escapes", escaping(door, SECOND_HALF_FAILS))}
    )
    result = run_cli("db", "migrate", env=backend.env(folder))
    assert result.exit_code == 1
    one_error_line(result.stderr)
    if backend.name != "mariadb":
        assert "first_half" not in tables(backend)
        assert states(backend) == {}
        fixed = make_migrations({"001_escapes.py": migration(1, "Fixed", FIRST_HALF)})
        assert run_cli("db", "migrate", env=backend.env(fixed)).exit_code == 0


def test_a_raw_cursor_commit_is_caught_and_the_migration_marked_unfinished(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    """A door Python cannot shut (a raw DBAPI cursor): the runner notices the transaction
    changed before it records anything, and tells the truth about what may be kept."""
    body = "\n".join(
        [FIRST_HALF, "conn.connection.cursor().execute('COMMIT')", "conn.execute(text('SELECT 1'))"]
    )
    folder = make_migrations({"001_escapes.py": migration(1, "Escapes", body)})
    result = run_cli("db", "migrate", env=backend.env(folder))
    if backend.name == "mariadb":
        # Every statement commits at once there anyway: the body ran whole, and its record
        # (started first, applied after) matches the schema.
        assert result.exit_code == 0, result.stderr
        assert states(backend) == {1: "applied"} and "first_half" in tables(backend)
        return
    assert result.exit_code == 1
    line = one_error_line(result.stderr)
    if backend.name == "sqlite":
        # SQLite's authorizer refuses the COMMIT itself.
        assert "rolled back and the database is unchanged" in line
        assert "first_half" not in tables(backend) and states(backend) == {}
    else:
        assert "may be partly" in line and "marked unfinished" in line
        assert states(backend) == {1: "started"}


@pytest.mark.parametrize(
    "body",
    [
        "conn.close()",
        "conn.invalidate()",
        "conn.connection.close()",
        "conn.connection.invalidate()",
        "conn.connection.dbapi_connection.close()",
    ],
    ids=["close", "invalidate", "pool-close", "pool-invalidate", "dbapi-close"],
)
def test_a_migration_that_closes_its_connection_fails_in_one_line(
    backend: Backend, make_migrations: MakeMigrations, body: str
) -> None:
    folder = make_migrations({"001_closes.py": migration(1, "Closes", f"{FIRST_HALF}\n{body}")})
    result = run_cli("db", "migrate", env=backend.env(folder))
    assert result.exit_code == 1, result.stdout
    line = one_error_line(result.stderr)
    assert line.startswith("Error: 001_closes.py failed: ")
    if backend.name != "mariadb":
        assert "first_half" not in tables(backend)
        assert states(backend) == {}
    fixed = make_migrations({"001_closes.py": migration(1, "Fixed", "pass")})
    again = run_cli("db", "migrate", env=backend.env(fixed))
    if backend.name == "mariadb":
        assert again.exit_code == 1  # marked unfinished: an operator checks, then repairs
    else:
        assert again.exit_code == 0, again.stderr


def test_a_dry_run_with_a_commit_changes_nothing_on_the_database(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(
        {"001_escapes.py": migration(1, "Escapes", escaping("sql-commit", SECOND_HALF_FAILS))}
    )
    result = run_cli("db", "migrate", "--dry-run", env=backend.env(folder))
    assert "Traceback" not in result.stderr
    if backend.name != "mariadb":
        assert result.exit_code == 1
        assert "FAILED" in result.stdout and "must not run COMMIT" in result.stdout
    assert "first_half" not in tables(backend)
    assert states(backend) == {}


@pytest.mark.parametrize(
    ("body", "shown"),
    [
        ("raise KeyboardInterrupt()", "it raised KeyboardInterrupt"),
        ("import sys\nsys.exit(0)", "it called sys.exit(0)"),
        ("class Odd(BaseException):\n    pass\nraise Odd('odd')", "it raised Odd: odd"),
    ],
    ids=["keyboard-interrupt", "sys-exit-0", "base-exception"],
)
def test_a_migration_raising_a_base_exception_is_a_failed_migration(
    backend: Backend, make_migrations: MakeMigrations, body: str, shown: str
) -> None:
    from tests.integration.processes import finish, start

    folder = make_migrations({"001_raises.py": migration(1, "Raises", f"{FIRST_HALF}\n{body}")})
    code, out, err = finish(start(backend, folder, "db", "migrate"))
    assert code == 1, out + err
    line = one_error_line(err)
    assert f"001_raises.py failed: {shown}" in line
    if backend.name != "mariadb":
        assert "first_half" not in tables(backend) and states(backend) == {}


def test_a_foreign_key_mismatch_names_the_migration_and_that_it_was_rolled_back(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    if backend.name != "sqlite":
        return  # the servers refuse such a key when it is declared
    body = "\n".join(
        [
            "conn.execute(text('CREATE TABLE parent (code TEXT)'))",
            "conn.execute(text('CREATE TABLE child (code TEXT REFERENCES parent (code))'))",
            "conn.execute(text(\"INSERT INTO child (code) VALUES ('a')\"))",
        ]
    )
    folder = make_migrations({"001_keys.py": migration(1, "Keys", body)})
    result = run_cli("db", "migrate", env=backend.env(folder))
    assert result.exit_code == 1
    line = one_error_line(result.stderr)
    assert line.startswith("Error: 001_keys.py failed: foreign key mismatch")
    assert "rolled back and the database is unchanged" in line
    assert "child" not in tables(backend) and states(backend) == {}
