"""A migration waits for its table's lock a bounded time, tries again a bounded number of times,
names the table and the session holding the lock, and leaves nothing to repair when it gives up
(issue 10: bounded lock waits for DDL)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, inspect, text

from tests.conftest import Backend, MakeMigrations, migration, run_cli

CREATE_WIDGETS = (
    "conn.execute(text('CREATE TABLE widgets (id INTEGER PRIMARY KEY, name VARCHAR(40))'))\n"
    "conn.execute(text(\"INSERT INTO widgets (id, name) VALUES (1, 'a'), (2, 'b')\"))"
)
ADD_NOTE = "conn.execute(text('ALTER TABLE widgets ADD COLUMN note VARCHAR(20)'))"


def widgets_migrations(
    make_migrations: MakeMigrations, *, timeout: float = 1, retries: int = 1
) -> Path:
    return make_migrations(
        {
            "001_widgets.py": migration(1, "Create widgets", CREATE_WIDGETS),
            "002_note.py": migration(2, "Add a note", ADD_NOTE)
            + f"\nDDL_LOCK_TIMEOUT_SECONDS = {timeout}\nDDL_LOCK_RETRIES = {retries}\n",
        }
    )


def session_id(conn: Connection, backend: Backend) -> int:
    query = "SELECT pg_backend_pid()" if backend.name == "postgresql" else "SELECT CONNECTION_ID()"
    return int(conn.execute(text(query)).scalar_one())


@contextmanager
def reader_in_transaction(backend: Backend) -> Iterator[int]:
    """An application session inside a transaction that has read widgets: it holds a lock that
    every ALTER TABLE widgets must wait for. Yields the session's id on the server."""
    engine = backend.engine()
    try:
        with engine.connect() as conn:
            who = session_id(conn, backend)
            conn.commit()
            conn.execute(text("SELECT count(*) FROM widgets")).scalar_one()
            yield who
            conn.rollback()
    finally:
        engine.dispose()


def recorded(backend: Backend) -> dict[int, str]:
    engine = backend.engine()
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT version, state FROM _schema_version"))
            return {row.version: row.state for row in rows}
    finally:
        engine.dispose()


def columns(backend: Backend) -> set[str]:
    engine = backend.engine()
    try:
        return {column["name"] for column in inspect(engine).get_columns("widgets")}
    finally:
        engine.dispose()


def test_a_migration_that_cannot_get_its_lock_gives_up_naming_table_and_holder(
    server_backend: Backend, make_migrations: MakeMigrations
) -> None:
    backend = server_backend
    folder = widgets_migrations(make_migrations, timeout=1, retries=1)
    env = backend.env(folder)
    assert run_cli("db", "migrate", "--target", "1", env=env).exit_code == 0

    with reader_in_transaction(backend) as holder:
        result = run_cli("db", "migrate", env=env)

    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    who = "pid" if backend.name == "postgresql" else "connection"
    assert re.match(
        rf"Error: 002_note\.py gave up waiting for a lock on widgets \(held by {who} {holder}\b"
        r"[^)]*idle in transaction for \d+ s[^)]*\) after 1 s, 2 times; nothing was changed and "
        r"nothing needs repair",
        lines[0],
    ), lines[0]
    # While it waited, the progress said so, and said it would try again.
    assert f"002: waiting for a lock on widgets (held by {who} {holder}" in result.stdout
    assert "trying again in 0.5 s (try 2 of 2)" in result.stdout
    # Rolled back (PostgreSQL) or never marked started (MariaDB): nothing to repair.
    assert recorded(backend) == {1: "applied"}
    assert "note" not in columns(backend)
    status = run_cli("db", "status", env=env)
    assert "Pending migrations: 1" in status.stdout
    assert "Problems" not in status.stderr

    # Once the application's transaction ends, the same command succeeds.
    again = run_cli("db", "migrate", env=env)
    assert again.exit_code == 0, again.stderr
    assert recorded(backend) == {1: "applied", 2: "applied"}
    assert "note" in columns(backend)


def test_a_migration_gets_its_lock_on_a_later_try_once_the_holder_ends(
    server_backend: Backend, make_migrations: MakeMigrations
) -> None:
    backend = server_backend
    folder = widgets_migrations(make_migrations, timeout=1, retries=5)
    env = backend.env(folder)
    assert run_cli("db", "migrate", "--target", "1", env=env).exit_code == 0
    released = threading.Event()
    holding = threading.Event()

    def hold() -> None:
        with reader_in_transaction(backend):
            holding.set()
            # Released after the first try has given up (it waits 1 s).
            released.wait(1.6)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(10)
        result = run_cli("db", "migrate", env=env)
    finally:
        released.set()
        holder.join()

    assert result.exit_code == 0, result.stderr
    assert "gave up waiting for a lock after 1 s; trying again" in result.stdout
    assert "Applied 002: Add a note" in result.stdout
    assert recorded(backend) == {1: "applied", 2: "applied"}
    assert "note" in columns(backend)


def test_the_configured_ddl_lock_timeout_applies_when_a_migration_sets_none(
    server_backend: Backend, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    backend = server_backend
    folder = make_migrations(
        {
            "001_widgets.py": migration(1, "Create widgets", CREATE_WIDGETS),
            "002_note.py": migration(2, "Add a note", ADD_NOTE) + "\nDDL_LOCK_RETRIES = 0\n",
        }
    )
    env = backend.env(folder) | {"ZOS_DATABASE__DDL_LOCK_TIMEOUT_SECONDS": "1"}
    assert run_cli("db", "migrate", "--target", "1", env=env).exit_code == 0
    with reader_in_transaction(backend):
        started = time.monotonic()
        result = run_cli("db", "migrate", env=env)
        waited = time.monotonic() - started
    assert result.exit_code == 1
    assert "gave up waiting for a lock on widgets" in result.stderr
    assert "after 1 s, once; nothing was changed" in result.stderr
    # Bounded: one try of 1 s, not the default of 5 s (a lower bound only: never machine speed).
    assert waited >= 1
    assert recorded(backend) == {1: "applied"}
