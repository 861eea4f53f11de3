"""Breaks found by a reviewer of issue 8: each test shows what a user sees today where the
issue's promises do not hold yet. Every case runs real ``python -m zos`` processes."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.conftest import SERVER_URLS, Backend, MakeMigrations, _backend, migration, run_zos
from tests.integration.processes import (
    finish,
    interrupt,
    one_error_line,
    start,
    states,
    tables,
    wait_for,
)
from tests.integration.test_interrupts import LONG_STATEMENT

T1 = migration(1, "T", "conn.execute(text('CREATE TABLE t (id INTEGER)'))")


@pytest.fixture(params=["sqlite", "postgresql"])
def rehearsing_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """The databases on which ``--dry-run`` runs the migrations' code (MariaDB only plans)."""
    yield from _backend(request.param, tmp_path)


@pytest.mark.parametrize(
    "ending",
    ["sys.exit(0)", "raise KeyboardInterrupt", "raise GeneratorExit", "raise SystemExit('bye')"],
)
def test_a_dry_run_of_a_migration_that_exits_or_raises_a_base_exception_fails_in_one_line(
    rehearsing_backend: Backend, make_migrations: MakeMigrations, ending: str
) -> None:
    backend = rehearsing_backend
    body = f"import sys\nconn.execute(text('CREATE TABLE first_half (id INTEGER)'))\n{ending}"
    folder = make_migrations({"001_t.py": T1, "002_exits.py": migration(2, "Exits", body)})
    result = run_zos("db", "migrate", "--dry-run", env=backend.env(folder))
    # A deploy script must never see success from a rehearsal that did not finish.
    assert result.returncode == 1, (result.stdout, result.stderr)
    one_error_line(result.stderr)
    assert "first_half" not in tables(backend)


CHECK_COMMITS = """
from sqlalchemy import text

VERSION = 1
DESCRIPTION = "Check commits"


def check(conn):
    conn.execute(text("CREATE TABLE from_check (id INTEGER)"))
    conn.commit()
    return False


def upgrade(conn):
    conn.execute(text("CREATE TABLE t2 (id INTEGER)"))
"""


def test_a_dry_run_whose_check_commits_changes_nothing(
    rehearsing_backend: Backend, make_migrations: MakeMigrations
) -> None:
    backend = rehearsing_backend
    engine = backend.engine()
    with engine.begin() as conn:  # an unversioned database: adoption asks check()
        conn.execute(text("CREATE TABLE legacy (id INTEGER)"))
    engine.dispose()
    folder = make_migrations({"001_check.py": CHECK_COMMITS})
    result = run_zos("db", "migrate", "--dry-run", env=backend.env(folder))
    assert "nothing was changed" in result.stdout
    assert tables(backend) == {"legacy"}, result.stdout
    assert result.returncode == 1
    assert "SAWarning" not in result.stderr


@pytest.fixture
def sqlite_backend(tmp_path: Path) -> Iterator[Backend]:
    yield from _backend("sqlite", tmp_path)


def test_a_migration_that_invalidates_its_pool_connection_fails_in_one_line_on_sqlite(
    sqlite_backend: Backend, make_migrations: MakeMigrations
) -> None:
    # Today: an AssertionError traceback from SqliteDialect._driver in foreign_keys_suspended.
    backend = sqlite_backend
    body = (
        "conn.execute(text('CREATE TABLE first_half (id INTEGER)'))\nconn.connection.invalidate()"
    )
    folder = make_migrations({"001_closes.py": migration(1, "Closes", body)})
    result = run_zos("db", "migrate", env=backend.env(folder))
    assert result.returncode == 1, result.stderr
    assert one_error_line(result.stderr).startswith("Error: 001_closes.py failed: ")
    assert "first_half" not in tables(backend) and states(backend) == {}


SLEEPS = """
import os
import time

from sqlalchemy import text

VERSION = 2
DESCRIPTION = "Think for a long time"


def upgrade(conn):
    conn.execute(text("CREATE TABLE started_work (id INTEGER)"))
    open(os.environ["ZOS_TEST_MARK"], "a").close()
    {wait}
"""


def _sleeping(backend: Backend, kind: str) -> str:
    if kind == "python":
        return SLEEPS.format(wait="time.sleep(600)")
    return SLEEPS.format(wait=f"conn.execute(text({LONG_STATEMENT[backend.name]!r}))")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_a_dry_run_stops_it_in_one_line_with_the_shells_code(
    rehearsing_backend: Backend, make_migrations: MakeMigrations, tmp_path: Path, signum: int
) -> None:
    backend = rehearsing_backend
    assert (
        run_zos("db", "migrate", env=backend.env(make_migrations({"001_t.py": T1}))).returncode == 0
    )
    # Twenty seconds of thought: long enough that a prompt stop is plain, short enough that
    # today's deferred signal shows up as a wrong exit code instead of a hang.
    folder = make_migrations(
        {"001_t.py": T1, "002_sleeps.py": SLEEPS.format(wait="time.sleep(20)")}
    )
    mark = tmp_path / "mark"
    process = start(backend, folder, "db", "migrate", "--dry-run", ZOS_TEST_MARK=str(mark))
    try:
        wait_for(mark, process)
        interrupt(process, signum)
        code, _out, err = finish(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    # Today the signal is held until the migration's code returns, then the rehearsal
    # reports success: exit 0 with "nothing was changed" once the code is done.
    assert code == 128 + signum
    assert "interrupted by" in one_error_line(err)
    assert "started_work" not in tables(backend) and states(backend) == {1: "applied"}


@pytest.mark.parametrize("kind", ["python", "sql"])
def test_ctrl_c_pressed_again_during_cleanup_still_ends_in_one_true_line_and_130(
    backend: Backend, make_migrations: MakeMigrations, tmp_path: Path, kind: str
) -> None:
    assert (
        run_zos("db", "migrate", env=backend.env(make_migrations({"001_t.py": T1}))).returncode == 0
    )
    folder = make_migrations({"001_t.py": T1, "002_sleeps.py": _sleeping(backend, kind)})
    mark = tmp_path / "mark"
    process = start(backend, folder, "db", "migrate", ZOS_TEST_MARK=str(mark))
    try:
        wait_for(mark, process)
        # An impatient operator: the later presses land while the first one is cleaned up.
        for pause in (0.0, 0.05, 0.2, 0.0):
            interrupt(process, signal.SIGINT)
            time.sleep(pause)
        code, _out, err = finish(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert code == 130  # not -2 (killed by the signal) as a supervisor would see it
    line = one_error_line(err)
    # The line describes the migration that was interrupted, never "no migration was running".
    assert "002_sleeps.py" in line, line
    left = states(backend)
    if left.get(2) == "started":
        assert "marked unfinished" in line
    else:
        assert left == {1: "applied"} and "started_work" not in tables(backend)


def _during_a_run(
    backend: Backend, make_migrations: MakeMigrations, tmp_path: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """``zos ARGS`` while another process runs 002 (which thinks until it is stopped)."""
    assert (
        run_zos("db", "migrate", env=backend.env(make_migrations({"001_t.py": T1}))).returncode == 0
    )
    # Only the real run thinks for long: a rehearsal of the same file returns at once.
    wait = "time.sleep(600) if os.environ.get('ZOS_TEST_THINK') else None"
    folder = make_migrations({"001_t.py": T1, "002_sleeps.py": SLEEPS.format(wait=wait)})
    mark = tmp_path / "mark"
    process = start(backend, folder, "db", "migrate", ZOS_TEST_MARK=str(mark), ZOS_TEST_THINK="1")
    try:
        wait_for(mark, process)
        env = backend.env(folder) | {"ZOS_TEST_MARK": str(tmp_path / "rehearsed")}
        result = run_zos(*args, env=env)
    finally:
        interrupt(process, signal.SIGTERM)
        code, _out, _err = finish(process)
    assert code == 143
    return subprocess.CompletedProcess(
        result.args,
        result.returncode,
        result.stdout.replace(str(process.pid), "<pid>"),
        result.stderr,
    )


def test_status_during_a_run_names_the_running_migration_and_its_process(
    backend: Backend, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    status = _during_a_run(backend, make_migrations, tmp_path, "db", "status")
    # The issue: "002 is running now, pid 4711 on host h", on every database.
    assert "002 is running now, pid <pid>" in status.stdout, status.stdout


def test_a_dry_run_during_a_run_neither_waits_for_it_nor_calls_it_unfinished(
    backend: Backend, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    # PostgreSQL today: the rehearsal blocks behind the running migration's locks until that
    # run ends (run_zos's 60 s guard fires). MariaDB: "002 … never finished; it may be partly
    # applied … repair", exit 1, about a migration that is running now.
    rehearsal = _during_a_run(backend, make_migrations, tmp_path, "db", "migrate", "--dry-run")
    assert "never finished" not in rehearsal.stderr, rehearsal.stderr
    assert "FAILED" not in rehearsal.stdout, rehearsal.stdout
    assert "Traceback" not in rehearsal.stderr


THINKS_THEN_CREATES = """
import os
import time

from sqlalchemy import text

VERSION = 2
DESCRIPTION = "Think"


def upgrade(conn):
    conn.execute(text("CREATE TABLE started_work (id INTEGER)"))
    open(os.environ["ZOS_TEST_MARK"], "a").close()
    if os.environ.get("ZOS_TEST_THINK"):
        while not os.path.exists(os.environ["ZOS_TEST_GO"]):
            time.sleep(0.05)
"""


@pytest.fixture
def postgresql_backend(tmp_path: Path) -> Iterator[Backend]:
    yield from _backend("postgresql", tmp_path)


def test_a_runner_whose_lock_session_is_killed_fails_in_one_line(
    postgresql_backend: Backend, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    """The server (or an operator's pg_terminate_backend) ends the run lock's session while
    002 runs: the runner must stop with one line, never a traceback."""
    backend = postgresql_backend
    three = migration(3, "U", "conn.execute(text('CREATE TABLE u (id INTEGER)'))")
    folder = make_migrations(
        {"001_t.py": T1, "002_think.py": THINKS_THEN_CREATES, "003_u.py": three}
    )
    mark, go = tmp_path / "mark", tmp_path / "go"
    process = start(
        backend,
        folder,
        "db",
        "migrate",
        ZOS_TEST_MARK=str(mark),
        ZOS_TEST_THINK="1",
        ZOS_TEST_GO=str(go),
    )
    try:
        wait_for(mark, process)
        database = make_url(backend.url).database
        admin = create_engine(SERVER_URLS["postgresql"], isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            killed = conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :db AND application_name LIKE 'zos:%'"
                ),
                {"db": database},
            ).all()
        admin.dispose()
        assert killed == [(True,)]
        go.touch()
        code, _out, err = finish(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert code == 1
    one_error_line(err)  # today: a PendingRollbackError traceback
    again = run_zos("db", "migrate", env=backend.env(folder) | {"ZOS_TEST_MARK": str(mark)})
    assert again.returncode == 0, again.stderr
    assert states(backend) == {1: "applied", 2: "applied", 3: "applied"}


SESSION_LEAKS = {
    # A common PostgreSQL idiom: create a schema and work in it.
    "search_path": (
        "conn.execute(text('CREATE SCHEMA app'))\n"
        "conn.execute(text('SET search_path TO app'))\n"
        "conn.execute(text('CREATE TABLE x (a int)'))"
    ),
    "read_only_session": (
        "conn.execute(text('SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY'))"
    ),
}


@pytest.mark.parametrize("leak", sorted(SESSION_LEAKS))
def test_a_session_setting_made_by_one_migration_never_fails_another_or_the_record(
    postgresql_backend: Backend, make_migrations: MakeMigrations, leak: str
) -> None:
    """Today: search_path -> "Error: database error on …: relation "_schema_version" does not
    exist" (the runner's own record fails, naming no migration); read-only -> "002_b.py failed:
    cannot execute CREATE TABLE in a read-only transaction", blaming 002 for 001's setting."""
    backend = postgresql_backend
    folder = make_migrations(
        {
            "001_a.py": migration(1, "A", SESSION_LEAKS[leak]),
            "002_b.py": migration(2, "B", "conn.execute(text('CREATE TABLE y (a int)'))"),
        }
    )
    result = run_zos("db", "migrate", "--no-backup", env=backend.env(folder))
    if result.returncode == 0:
        assert states(backend) == {1: "applied", 2: "applied"}
        return
    # If it fails, the line names the migration whose code caused it.
    assert one_error_line(result.stderr).startswith("Error: 001_a.py failed: "), result.stderr


ITEMS = """
conn.execute(text("CREATE TABLE items (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)"))
conn.execute(text("INSERT INTO items (id, n) VALUES (:id, 0)"), [{"id": i} for i in range(1, 11)])
"""

BACKFILL_THAT_COMMITS = """
import os

from sqlalchemy import text

from zos.migrator.backfill import Batches

VERSION = 2
DESCRIPTION = "Count every item once"
BATCHES = Batches(table="items", key="id", size=5)


def backfill(conn, low, high):
    conn.execute(
        text("UPDATE items SET n = n + 1 WHERE id > :low AND id <= :high"),
        {"low": low, "high": high},
    )
    if os.environ.get("ZOS_TEST_ESCAPE"):
        conn.connection.cursor().execute("COMMIT")
        if os.environ["ZOS_TEST_ESCAPE"] == "then-fail":
            conn.execute(text("SELECT * FROM no_such_table"))
"""


@pytest.mark.parametrize("then", ["then-succeed", "then-fail"])
def test_a_backfill_batch_that_commits_itself_is_not_run_twice(
    backend: Backend, make_migrations: MakeMigrations, then: str
) -> None:
    """A batch whose code commits through a raw cursor: the runner says the batch "was rolled
    back" and resumes it, so its rows are counted twice (PostgreSQL notices the commit but
    says so anyway; MariaDB when the batch fails after the commit)."""
    folder = make_migrations(
        {"001_items.py": migration(1, "Items", ITEMS), "002_count.py": BACKFILL_THAT_COMMITS}
    )
    env = backend.env(folder)
    first = run_zos("db", "migrate", "--no-backup", env=env | {"ZOS_TEST_ESCAPE": then})
    line = one_error_line(first.stderr) if first.returncode else ""
    if first.returncode and "was rolled back" not in line:
        return  # marked for an operator to check: no claim that nothing was kept
    again = run_zos("db", "migrate", "--no-backup", env=env)
    assert again.returncode == 0, again.stderr
    engine = backend.engine()
    try:
        with engine.connect() as conn:
            counts = dict(conn.execute(text("SELECT n, COUNT(*) FROM items GROUP BY n")).all())
    finally:
        engine.dispose()
    assert counts == {1: 10}, (line, counts)


@pytest.mark.parametrize(
    "door",
    [
        "conn.connection.cursor().execute('COMMIT')",
        "conn.connection.driver_connection.execute('COMMIT')",
    ],
    ids=["raw-cursor", "psycopg-connection-execute"],
)
def test_a_dry_run_never_says_nothing_was_changed_when_a_migration_committed(
    rehearsing_backend: Backend, make_migrations: MakeMigrations, door: str
) -> None:
    """PostgreSQL today: first_half is created for good, the header still says "nothing was
    changed", and the next real run fails on "already exists"."""
    backend = rehearsing_backend
    body = f"conn.execute(text('CREATE TABLE first_half (id INTEGER)'))\n{door}"
    folder = make_migrations({"001_a.py": migration(1, "A", body)})
    result = run_zos("db", "migrate", "--dry-run", env=backend.env(folder))
    assert result.returncode == 1
    if "first_half" in tables(backend):
        assert "nothing was changed" not in result.stdout, result.stdout
