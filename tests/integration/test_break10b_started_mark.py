"""Issue 10 second break: on MariaDB a run killed while its first change waits for a lock has
marked nothing (README "Production": "a run that gives up, or is stopped by SIGINT, SIGTERM or
even SIGKILL while it waits, has marked nothing"), whatever the first change is and however it
is spelled."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, create_engine, make_url, text

from tests.conftest import SERVER_URLS, Backend, MakeMigrations, _backend, migration, run_cli
from tests.integration.test_lock_waits import recorded


@pytest.fixture
def mariadb(tmp_path: Path) -> Iterator[Backend]:
    yield from _backend("mariadb", tmp_path)


SETUP = (
    "conn.execute(text('CREATE TABLE widgets (id INTEGER PRIMARY KEY, name VARCHAR(40))'))\n"
    "conn.execute(text(\"INSERT INTO widgets (id, name) VALUES (1, 'a'), (2, 'b')\"))\n"
    "conn.execute(text('CREATE TABLE other (id INTEGER PRIMARY KEY)'))\n"
    "conn.execute(text('CREATE TABLE `widget parts` (id INTEGER PRIMARY KEY)'))\n"
    "conn.execute(text('CREATE VIEW widget_names AS SELECT name FROM widgets'))"
)
# What the application's open transaction has read: each keeps a metadata lock that a schema
# change of that table or view must wait for.
READ_BY_APPLICATION = ("widgets", "widget_names", "`widget parts`")

# First changes a MariaDB server makes wait behind such a transaction (each checked by hand:
# error 1205 after lock_wait_timeout).
FIRST_CHANGES = {
    "line_comment_first": "-- add a note\nALTER TABLE widgets ADD COLUMN note VARCHAR(20)",
    "block_comment_first": "/* add a note */ ALTER TABLE widgets ADD COLUMN note VARCHAR(20)",
    "truncate_without_table": "TRUNCATE widgets",
    "create_trigger": (
        "CREATE TRIGGER widgets_named BEFORE INSERT ON widgets FOR EACH ROW SET NEW.name = 'x'"
    ),
    "replace_view": "CREATE OR REPLACE VIEW widget_names AS SELECT id, name FROM widgets",
    "drop_view": "DROP VIEW widget_names",
    "drop_two_tables": "DROP TABLE other, widgets",
    "rename_two_tables": "RENAME TABLE other TO other2, widgets TO widgets2",
    "backquoted_name_with_a_space": "ALTER TABLE `widget parts` ADD COLUMN note INTEGER",
    "temporary_table_first": (
        "CREATE TEMPORARY TABLE scratch (id INTEGER);\n"
        "ALTER TABLE widgets ADD COLUMN note VARCHAR(20)"
    ),
}


def project(make_migrations: MakeMigrations, first_change: str) -> Path:
    body = "\n".join(
        f"conn.exec_driver_sql({statement!r})" for statement in first_change.split(";\n")
    )
    return make_migrations(
        {
            "001_setup.py": migration(1, "Set up", SETUP),
            "002_change.py": migration(2, "Change", body)
            + "\nDDL_LOCK_TIMEOUT_SECONDS = 2\nDDL_LOCK_RETRIES = 0\n",
        }
    )


@contextmanager
def application_transaction(url: str) -> Iterator[Connection]:
    """A session that has read every table and view of the project and stays in its
    transaction (idle) until the block ends."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            for name in READ_BY_APPLICATION:
                conn.execute(text(f"SELECT COUNT(*) FROM {name}")).scalar_one()
            yield conn
            conn.rollback()
    finally:
        engine.dispose()


def waiting_statements(url: str, database: str) -> int:
    """How many sessions of ``database`` wait for a lock now (a dead runner's statement goes
    on waiting on the server until its own bound)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    text(
                        "SELECT COUNT(*) FROM information_schema.PROCESSLIST"
                        " WHERE DB = :db AND STATE LIKE '%lock%' AND ID <> CONNECTION_ID()"
                    ),
                    {"db": database},
                ).scalar_one()
            )
    finally:
        engine.dispose()


def until_nothing_waits(url: str, database: str) -> None:
    for _ in range(600):  # at most 60 s
        if not waiting_statements(url, database):
            return
        time.sleep(0.1)
    raise AssertionError("a dead runner's statement still waits after 60 s")


def start_runner(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "zos", "db", "migrate"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_when_waiting(runner: subprocess.Popen[str]) -> None:
    assert runner.stdout is not None
    for line in runner.stdout:
        if "waiting for a lock" in line:
            break
    else:
        raise AssertionError("the runner never said it was waiting for a lock")
    runner.send_signal(signal.SIGKILL)
    runner.communicate(timeout=60)


@pytest.mark.parametrize("first_change", FIRST_CHANGES.values(), ids=FIRST_CHANGES.keys())
def test_mariadb_a_run_killed_while_its_first_change_waits_for_a_lock_has_marked_nothing(
    mariadb: Backend, make_migrations: MakeMigrations, first_change: str
) -> None:
    env = mariadb.env(project(make_migrations, first_change))
    assert run_cli("db", "migrate", "--target", "1", env=env).exit_code == 0
    database = make_url(mariadb.url).database
    assert database is not None
    with application_transaction(mariadb.url):
        kill_when_waiting(start_runner(env))
        # Keep the lock until the dead runner's statement has given up on the server, so that
        # it never runs.
        until_nothing_waits(mariadb.url, database)
    assert recorded(mariadb) == {1: "applied"}


@pytest.fixture
def user_without_lock_tables(mariadb: Backend) -> Iterator[str]:
    """The URL of a user who may change the test database's schema and data, but has no LOCK
    TABLES privilege (a common grant for an application's migration user)."""
    admin = create_engine(SERVER_URLS["mariadb"], isolation_level="AUTOCOMMIT")
    name = f"zos_nolock_{uuid.uuid4().hex[:8]}"
    database = make_url(mariadb.url).database
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE USER '{name}'@'%' IDENTIFIED BY 'pw'"))
            conn.execute(
                text(
                    "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, INDEX,"
                    f" CREATE VIEW, SHOW VIEW, TRIGGER, REFERENCES ON {database}.* TO '{name}'@'%'"
                )
            )
        url = make_url(mariadb.url).set(username=name, password="pw")
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP USER IF EXISTS '{name}'@'%'"))
        admin.dispose()


def test_mariadb_a_user_without_lock_tables_killed_while_waiting_has_marked_nothing(
    mariadb: Backend, make_migrations: MakeMigrations, user_without_lock_tables: str
) -> None:
    folder = project(make_migrations, "ALTER TABLE widgets ADD COLUMN note VARCHAR(20)")
    env = mariadb.env(folder)
    env["ZOS_DATABASE_URL"] = user_without_lock_tables
    setup = run_cli("db", "migrate", "--target", "1", env=env)
    assert setup.exit_code == 0, setup.stderr
    database = make_url(mariadb.url).database
    assert database is not None
    with application_transaction(mariadb.url):
        out, err = start_runner(env).communicate(timeout=120)
        until_nothing_waits(mariadb.url, database)
    # The run refuses at once to mark anything it cannot first lock, in one line that says
    # what to grant; a mark for an ALTER that never ran would need repair.
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "may not LOCK TABLES" in lines[0] and "GRANT LOCK TABLES" in lines[0], lines[0]
    assert "nothing was changed and nothing needs repair" in lines[0], lines[0]
    assert "waiting for a lock" not in out
    assert recorded(mariadb) == {1: "applied"}


def test_mariadb_a_reader_arriving_between_the_lock_probe_and_the_change_leaves_no_mark(
    mariadb: Backend, make_migrations: MakeMigrations
) -> None:
    """An application reads widgets all the time: one reader queued behind the probe's
    LOCK TABLES is granted the moment the probe unlocks, before the ALTER asks. Killed while the
    ALTER waits for that reader, the run must not have marked the migration started."""
    folder = project(make_migrations, "ALTER TABLE widgets ADD COLUMN note VARCHAR(20)")
    env = mariadb.env(folder)
    assert run_cli("db", "migrate", "--target", "1", env=env).exit_code == 0
    database = make_url(mariadb.url).database
    assert database is not None
    engine = create_engine(mariadb.url)
    second_read = threading.Event()
    done = threading.Event()

    def second_reader() -> None:
        with engine.connect() as conn:
            conn.execute(text("SELECT COUNT(*) FROM widgets")).scalar_one()  # queued
            second_read.set()
            done.wait(120)
            conn.rollback()

    try:
        with application_transaction(mariadb.url) as first:
            runner = start_runner(env)
            _until_statement_waits(engine, database, "LOCK TABLES%")
            reader = threading.Thread(target=second_reader)
            reader.start()
            _until_statement_waits(engine, database, "SELECT COUNT(*) FROM widgets%")
            first.rollback()  # the runner's lock is granted; the second reader queues
            # Either the change runs under the runner's lock (the reader waits for it), or,
            # should the reader slip in first, the run is killed while the change waits.
            if _statement_waits_or_runner_ends(engine, database, "ALTER TABLE widgets%", runner):
                runner.send_signal(signal.SIGKILL)
            runner.communicate(timeout=60)
            until_nothing_waits(mariadb.url, database)
            done.set()
            reader.join(60)
            assert second_read.is_set()
    finally:
        done.set()
        engine.dispose()
    assert recorded(mariadb) in ({1: "applied"}, {1: "applied", 2: "applied"})


def _statement_waits_or_runner_ends(
    engine: Engine, database: str, like: str, runner: subprocess.Popen[str]
) -> bool:
    """True once a statement like ``like`` waits for a lock; False once the runner has ended."""
    with engine.connect() as conn:
        for _ in range(1200):
            if runner.poll() is not None:
                return False
            found = conn.execute(
                text(
                    "SELECT COUNT(*) FROM information_schema.PROCESSLIST"
                    " WHERE DB = :db AND INFO LIKE :like AND STATE LIKE '%lock%'"
                ),
                {"db": database, "like": like},
            ).scalar_one()
            conn.rollback()
            if found:
                return True
            time.sleep(0.05)
    raise AssertionError(f"neither a statement like {like!r} waited nor the runner ended")


def _until_statement_waits(engine: Engine, database: str, like: str) -> None:
    with engine.connect() as conn:
        for _ in range(600):
            found = conn.execute(
                text(
                    "SELECT COUNT(*) FROM information_schema.PROCESSLIST"
                    " WHERE DB = :db AND INFO LIKE :like AND STATE LIKE '%lock%'"
                ),
                {"db": database, "like": like},
            ).scalar_one()
            conn.rollback()
            if found:
                return
            time.sleep(0.05)
    raise AssertionError(f"no statement like {like!r} waited within 30 s")
