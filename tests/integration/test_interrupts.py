"""Ctrl-C and SIGTERM at any step: the running migration rolls back where the database can,
the run lock is released, one line says what state the database is in, and the exit code is
the shell's for the signal. And a finished run is on disk when it says so."""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import Backend, MakeMigrations, migration, run_cli
from tests.integration.processes import finish, interrupt, one_error_line, start, states, tables

# A statement that keeps the database busy for far longer than any test waits.
LONG_STATEMENT = {
    "sqlite": (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000000000)"
        " SELECT count(*) FROM c"
    ),
    "postgresql": "SELECT pg_sleep(600)",
    "mariadb": "SELECT SLEEP(600)",
}

LONG = """
import os

from sqlalchemy import text

VERSION = 2
DESCRIPTION = "Run for a long time"


def upgrade(conn):
    conn.execute(text("CREATE TABLE started_work (id INTEGER)"))
    open(os.environ["ZOS_TEST_MARK"], "a").close()
    conn.execute(text({statement!r}))
"""

PYTHON_LOOP = """
import os
import time

from sqlalchemy import text

VERSION = 2
DESCRIPTION = "Think for a long time"


def upgrade(conn):
    conn.execute(text("CREATE TABLE started_work (id INTEGER)"))
    open(os.environ["ZOS_TEST_MARK"], "a").close()
    time.sleep(600)
"""

ONE = migration(1, "T", "conn.execute(text('CREATE TABLE t (id INTEGER)'))")


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["sigint", "sigterm"]
)
@pytest.mark.parametrize("where", ["statement", "python"])
def test_a_signal_during_a_migration_rolls_it_back_and_says_so_in_one_line(
    backend: Backend,
    make_migrations: MakeMigrations,
    tmp_path: Path,
    signum: int,
    code: int,
    where: str,
) -> None:
    body = (
        LONG.format(statement=LONG_STATEMENT[backend.name])
        if where == "statement"
        else (PYTHON_LOOP)
    )
    folder = make_migrations({"001_t.py": ONE, "002_long.py": body})
    mark = tmp_path / "running"
    runner = start(backend, folder, "db", "migrate", ZOS_TEST_MARK=str(mark))
    from tests.integration.processes import wait_for

    wait_for(mark, runner)
    interrupt(runner, signum)
    returncode, out, err = finish(runner)
    assert returncode == code, out + err
    line = one_error_line(err)
    name = signal.Signals(signum).name
    assert line.startswith(f"Error: interrupted by {name} during 002_long.py: ")
    if backend.name == "mariadb":
        assert "marked unfinished" in line
        assert states(backend) == {1: "applied", 2: "started"}
    else:
        assert "rolled back and the database is unchanged" in line
        assert line.endswith("the database is at version 1")
        assert states(backend) == {1: "applied"}
        assert "started_work" not in tables(backend)
        # The lock went with the run: the next one goes ahead at once.
        fixed = make_migrations({"001_t.py": ONE, "002_long.py": migration(2, "Quick")})
        assert run_cli("db", "migrate", env=backend.env(fixed)).exit_code == 0


def test_a_finished_run_syncs_the_wal_even_while_the_application_reads(
    backend: Backend, make_migrations: MakeMigrations, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend.name != "sqlite":
        return  # a server syncs every commit itself
    folder = make_migrations({"001_t.py": ONE, "002_u.py": migration(2, "U")})
    assert run_cli("db", "migrate", "--target", "1", env=backend.env(folder)).exit_code == 0
    database = Path(backend.url.removeprefix("sqlite:///"))
    reader = sqlite3.connect(database, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM t").fetchone()  # a read transaction held open
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    try:
        result = run_cli("db", "migrate", "--no-backup", env=backend.env(folder))
    finally:
        reader.close()
    assert result.exit_code == 0, result.stderr
    assert str(database.resolve()) + "-wal" in synced
