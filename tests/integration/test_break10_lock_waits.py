"""Issue 10 break: lock waits on MariaDB: a killed run, and the session the error names."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import SERVER_URLS, Backend, MakeMigrations, _backend, migration, run_cli
from tests.integration.test_lock_waits import (
    ADD_NOTE,
    CREATE_WIDGETS,
    columns,
    reader_in_transaction,
    recorded,
    session_id,
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


@contextmanager
def metadata_lock_info(installed: bool) -> Iterator[None]:
    """The server with MariaDB's metadata_lock_info plugin installed or not for the body.

    The plugin is server-wide: a named server lock keeps two tests (of this or another
    checkout) from changing it under each other, and a plugin installed here is uninstalled.
    """
    engine = create_engine(SERVER_URLS["mariadb"], isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            got = conn.execute(text("SELECT GET_LOCK('zos_tests_metadata_lock_info', 300)"))
            assert got.scalar() == 1, "another test kept the plugin lock for 5 minutes"
            status = conn.execute(
                text(
                    "SELECT PLUGIN_STATUS FROM information_schema.ALL_PLUGINS"
                    " WHERE PLUGIN_NAME = 'METADATA_LOCK_INFO'"
                )
            ).scalar()
            if status is None:
                pytest.skip("this MariaDB server has no metadata_lock_info plugin to install")
            if status == "ACTIVE" and not installed:
                pytest.skip("the server's operator installed metadata_lock_info; it stays")
            ours = installed and status != "ACTIVE"
            if ours:
                conn.execute(text("INSTALL SONAME 'metadata_lock_info'"))
            try:
                yield
            finally:
                if ours:
                    conn.execute(text("UNINSTALL SONAME 'metadata_lock_info'"))
                conn.execute(text("SELECT RELEASE_LOCK('zos_tests_metadata_lock_info')"))
    finally:
        engine.dispose()


@pytest.mark.parametrize("plugin", [True, False], ids=["metadata_lock_info", "no-plugin"])
def test_mariadb_names_the_session_holding_the_lock_not_an_older_unrelated_transaction(
    plugin: bool, mariadb: Backend, make_migrations: MakeMigrations
) -> None:
    folder = widgets_migrations(make_migrations, timeout=1, retries=0)
    env = mariadb.env(folder)
    assert run_cli("db", "migrate", "--target", "1", env=env).exit_code == 0
    # An unrelated application transaction, older, in another database, touching nothing of
    # widgets.
    bystander_db = mariadb.sibling()
    bystander_engine = bystander_db.engine()
    try:
        with metadata_lock_info(plugin), bystander_engine.connect() as bystander:
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
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    named = re.findall(r"held by connection (\d+)", result.stderr)
    assert named, result.stderr
    assert int(named[0]) != bystander_id, result.stderr
    assert int(named[0]) == holder, result.stderr
    assert f"connection {bystander_id}" not in result.stderr + result.stdout
    if plugin:
        # The server lists the holder: said as a fact, with the advice to end it.
        assert f"(held by connection {holder} " in lines[0], lines[0]
        assert "end that session" in lines[0], lines[0]
    else:
        # A candidate, never a fact: no advice to end a session that may be innocent.
        assert f"(probably held by connection {holder} " in lines[0], lines[0]
        assert "end that session" not in lines[0], lines[0]
        assert "make sure that session holds the lock" in lines[0], lines[0]


def test_a_row_lock_wait_names_the_table_and_the_session_holding_the_row(
    server_backend: Backend, make_migrations: MakeMigrations
) -> None:
    backend = server_backend
    folder = make_migrations(
        {
            "001_widgets.py": migration(1, "Create widgets", CREATE_WIDGETS),
            "002_rename.py": migration(
                2, "Rename a", "conn.execute(text(\"UPDATE widgets SET name = 'z' WHERE id = 1\"))"
            )
            + "\nDDL_LOCK_TIMEOUT_SECONDS = 1\nDDL_LOCK_RETRIES = 0\n",
        }
    )
    env = backend.env(folder)
    assert run_cli("db", "migrate", "--target", "1", env=env).exit_code == 0
    engine = backend.engine()
    try:
        with engine.connect() as writer:
            holder = session_id(writer, backend)
            writer.commit()
            writer.execute(text("UPDATE widgets SET name = 'w' WHERE id = 1"))
            result = run_cli("db", "migrate", env=env)
            writer.rollback()
    finally:
        engine.dispose()
    assert result.exit_code == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    who = "pid" if backend.name == "postgresql" else "connection"
    # InnoDB and pg_blocking_pids() both name a row lock's holder for certain.
    assert lines[0].startswith(
        f"Error: 002_rename.py gave up waiting for a lock on widgets (held by {who} {holder}"
    ), lines[0]
    assert "a row" not in lines[0]
    assert recorded(backend) == {1: "applied"}


def test_mariadb_a_migration_that_gives_up_on_a_lock_after_changing_something_says_so(
    mariadb: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(
        {
            "001_widgets.py": migration(1, "Create widgets", CREATE_WIDGETS),
            "002_case.py": migration(
                2,
                "Create other, then add a note",
                "conn.execute(text('CREATE TABLE other (id INTEGER PRIMARY KEY)'))\n" + ADD_NOTE,
            )
            + "\nDDL_LOCK_TIMEOUT_SECONDS = 1\nDDL_LOCK_RETRIES = 2\n",
        }
    )
    env = mariadb.env(folder)
    assert run_cli("db", "migrate", "--target", "1", env=env).exit_code == 0
    with reader_in_transaction(mariadb) as holder:
        result = run_cli("db", "migrate", env=env)
    assert result.exit_code == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    # The table and the session, not the driver's "(1205, 'Lock wait timeout exceeded; …')".
    assert re.match(
        rf"Error: 002_case\.py gave up waiting for a lock on widgets \((?:probably )?held by "
        rf"connection {holder}\b[^)]*\) after 1 s, after it had changed something, so it was "
        r"not tried again; .*marked unfinished.*; the database is at version 1$",
        lines[0],
    ), lines[0]
    assert "1205" not in lines[0] and "Lock wait timeout" not in lines[0]
    # Committed DDL cannot be undone: the mark stays, as documented.
    assert recorded(mariadb) == {1: "applied", 2: "started"}
    assert "trying again" not in result.stdout


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
