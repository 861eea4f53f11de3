"""After a migration fails half-way, the error and ``status`` name the same current version,
and ``status`` calls the unfinished migration what it is (issue 10)."""

from __future__ import annotations

import re

from tests.conftest import Backend, MakeMigrations, migration, run_cli

HALF_DONE = "conn.execute(text('CREATE TABLE b (id INTEGER)'))\nraise ValueError('boom')"


def test_the_error_and_status_agree_on_the_version_after_a_half_done_migration(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    # MariaDB commits the CREATE TABLE at once; elsewhere TRANSACTIONAL = False does the same.
    outside = "" if backend.name == "mariadb" else "\nTRANSACTIONAL = False\n"
    folder = make_migrations(
        {
            "001_a.py": migration(1, "A", "conn.execute(text('CREATE TABLE a (id INTEGER)'))"),
            "002_b.py": migration(2, "Half done", HALF_DONE) + outside,
            "003_c.py": migration(3, "C", "conn.execute(text('CREATE TABLE c (id INTEGER)'))"),
        }
    )
    env = backend.env(folder)
    failed = run_cli("db", "migrate", env=env)
    assert failed.exit_code == 1
    error = failed.stderr.strip().splitlines()
    assert len(error) == 1
    assert error[0].startswith("Error: 002_b.py failed: boom;")
    said = re.search(r"the database is at version (\d+)$", error[0])
    assert said is not None and said.group(1) == "1", error[0]

    status = run_cli("db", "status", env=env)
    assert "Current version: 1\n" in status.stdout
    assert (
        "Unfinished migration: 2: Half done (started and never finished; see the problems below)"
        in status.stdout
    )
