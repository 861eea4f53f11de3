"""Issue 10 break: lock waits on MariaDB: a killed run, and the session the error names."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.conftest import Backend, MakeMigrations, _backend, run_cli
from tests.integration.test_lock_waits import (
    columns,
    reader_in_transaction,
    recorded,
    widgets_migrations,
)


@pytest.fixture
def mariadb(tmp_path: Path) -> Iterator[Backend]:
    yield from _backend("mariadb", tmp_path)


def test_mariadb_a_run_killed_while_it_waits_for_a_lock_leaves_nothing_to_repair(
    mariadb: Backend, make_migrations: MakeMigrations
) -> None:
    folder = widgets_migrations(make_migrations, timeout=2, retries=0)
    env = mariadb.env(folder)
    assert run_cli("db", "migrate", "--target", "1", env=env).exit_code == 0
    with reader_in_transaction(mariadb):
        runner = subprocess.Popen(
            [sys.executable, "-m", "zos", "db", "migrate"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert runner.stdout is not None
        for line in runner.stdout:
            if "waiting for a lock on widgets" in line:
                break
        runner.send_signal(signal.SIGKILL)
        runner.communicate(timeout=60)
        # The server goes on waiting for the dead runner's ALTER until its own bound (2 s);
        # keep the lock until that ALTER is gone, so it never runs.
        _wait_until_no_alter_waits(mariadb)
    # The ALTER never ran: nothing should be marked started (issue 10: take the table lock or
    # check for blockers before writing the started marker).
    assert "note" not in columns(mariadb)
    assert recorded(mariadb) == {1: "applied"}
    after = run_cli("db", "migrate", env=env)
    assert after.exit_code == 0, after.stderr


def test_mariadb_names_the_session_holding_the_lock_not_an_older_unrelated_transaction(
    mariadb: Backend, make_migrations: MakeMigrations
) -> None:
    folder = widgets_migrations(make_migrations, timeout=1, retries=0)
    env = mariadb.env(folder)
    assert run_cli("db", "migrate", "--target", "1", env=env).exit_code == 0
    # An unrelated application transaction, older, in another database, touching nothing of
    # widgets.
    bystander_db = mariadb.sibling()
    bystander_engine = bystander_db.engine()
    try:
        with bystander_engine.connect() as bystander:
            bystander.execute(text("CREATE TABLE other (id INTEGER PRIMARY KEY)"))
            bystander.commit()
            bystander_id = int(bystander.execute(text("SELECT CONNECTION_ID()")).scalar_one())
            bystander.execute(text("SELECT count(*) FROM other")).scalar_one()
            time.sleep(1.5)  # INNODB_TRX.trx_started counts whole seconds: be the older one
            with reader_in_transaction(mariadb) as holder:
                result = run_cli("db", "migrate", env=env)
            bystander.rollback()
    finally:
        bystander_engine.dispose()
    assert result.exit_code == 1, result.stderr
    named = re.findall(r"held by connection (\d+)", result.stderr)
    assert named, result.stderr
    assert int(named[0]) != bystander_id, result.stderr
    assert int(named[0]) == holder, result.stderr


def _wait_until_no_alter_waits(backend: Backend) -> None:
    engine = backend.engine()
    try:
        with engine.connect() as conn:
            for _ in range(600):  # at most 60 s
                waiting = conn.execute(
                    text(
                        "SELECT COUNT(*) FROM information_schema.PROCESSLIST"
                        " WHERE INFO LIKE 'ALTER TABLE widgets%'"
                    )
                ).scalar_one()
                conn.commit()
                if not waiting:
                    return
                time.sleep(0.1)
        raise AssertionError("the dead runner's ALTER is still waiting after 60 s")
    finally:
        engine.dispose()
