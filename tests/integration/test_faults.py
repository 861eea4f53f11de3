"""Runners killed at random instants, a live application writing meanwhile, and a connection
that the server drops mid-run: the recorded versions always match the schema."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from sqlalchemy import inspect, text

from tests.conftest import REAL_MIGRATIONS, Backend, MakeMigrations, run_zos
from zos.database import get_engine, metadata

SEED = 20261125
KILLS_PER_BACKEND = 12
ROWS_PER_MIGRATION = 3000

SLOW = """
from sqlalchemy import text

VERSION = {n}
DESCRIPTION = "Create and fill thing {n}"


def upgrade(conn):
    conn.execute(text("CREATE TABLE thing_{n} (id INTEGER PRIMARY KEY, label VARCHAR(40))"))
    conn.execute(
        text("INSERT INTO thing_{n} (id, label) VALUES (:id, :label)"),
        [{{"id": i, "label": "row %d" % i}} for i in range({rows})],
    )
"""


def slow_migrations(make_migrations: MakeMigrations, count: int = 6) -> Path:
    return make_migrations(
        {
            f"{n:03d}_thing_{n}.py": SLOW.format(n=n, rows=ROWS_PER_MIGRATION)
            for n in range(1, count + 1)
        }
    )


def start_migrate(backend: Backend, folder: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "zos", "db", "migrate"],
        env=backend.env(folder),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def database_state(backend: Backend) -> tuple[dict[int, str], dict[int, int]]:
    """(version -> recorded state, thing table number -> its row count)."""
    engine = backend.engine()
    try:
        with engine.connect() as conn:
            names = inspect(conn).get_table_names()
            recorded: dict[int, str] = {}
            if "_schema_version" in names:
                rows = conn.execute(text("SELECT version, state FROM _schema_version"))
                recorded = {row.version: row.state for row in rows}
            things = {
                int(name.split("_")[1]): conn.execute(
                    text(f"SELECT COUNT(*) FROM {name}")
                ).scalar_one()
                for name in names
                if name.startswith("thing_")
            }
            return recorded, things
    finally:
        engine.dispose()


def assert_consistent(backend: Backend, recorded: dict[int, str], things: dict[int, int]) -> None:
    """Every applied version is fully in the schema, and nothing else is."""
    applied = {v for v, state in recorded.items() if state == "applied"}
    assert {v: things.get(v) for v in applied} == {v: ROWS_PER_MIGRATION for v in applied}
    unfinished = {v for v, state in recorded.items() if state == "started"}
    if backend.name == "mariadb":
        # DDL commits at once there: an unfinished run may leave its table, and says so.
        assert len(unfinished) <= 1
        assert set(things) <= applied | unfinished
    else:
        assert unfinished == set()
        assert set(things) == applied


def resolve_unfinished(backend: Backend, folder: Path, recorded: dict[int, str]) -> None:
    """What an operator does after a kill on MariaDB: undo the partial change, then forget it."""
    for version, state in recorded.items():
        if state != "started":
            continue
        engine = backend.engine()
        with engine.begin() as conn:
            conn.execute(text(f"DROP TABLE IF EXISTS thing_{version}"))
        engine.dispose()
        result = run_zos("db", "repair", "--forget", str(version), env=backend.env(folder))
        assert result.returncode == 0, result.stderr


def start_and_wait_for_migrations(backend: Backend, folder: Path) -> subprocess.Popen[str]:
    """Start a runner and return once it has created its version table (start-up is over)."""
    runner = start_migrate(backend, folder)
    engine = backend.engine()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and runner.poll() is None:
            with engine.connect() as conn:
                if inspect(conn).has_table("_schema_version"):
                    break
            time.sleep(0.005)
    finally:
        engine.dispose()
    return runner


def test_a_runner_killed_at_any_instant_leaves_versions_matching_the_schema(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = slow_migrations(make_migrations)
    rng = random.Random(SEED)
    # Calibrate to this machine: how long the migrations themselves take, start-up excluded.
    probe = start_and_wait_for_migrations(backend.sibling(), folder)
    started = time.monotonic()
    assert probe.wait(timeout=120) == 0
    window = time.monotonic() - started
    partial = 0
    for _ in range(KILLS_PER_BACKEND):
        database = backend.sibling()
        runner = start_and_wait_for_migrations(database, folder)
        try:
            runner.wait(timeout=rng.uniform(0, window))
        except subprocess.TimeoutExpired:
            runner.send_signal(signal.SIGKILL)
        runner.communicate(timeout=30)
        recorded, things = database_state(database)
        assert_consistent(database, recorded, things)
        partial += len(recorded) < 6 or "started" in recorded.values()
        resolve_unfinished(database, folder, recorded)
        finish = run_zos("db", "migrate", env=database.env(folder))
        assert finish.returncode == 0, finish.stderr
        recorded, things = database_state(database)
        assert recorded == {v: "applied" for v in range(1, 7)}
        assert things == {v: ROWS_PER_MIGRATION for v in range(1, 7)}
    # The kills must mostly land inside the run, or the test proves nothing.
    assert partial >= KILLS_PER_BACKEND // 4


LONG = """
import time

from sqlalchemy import text

VERSION = 2
DESCRIPTION = "Fill a big table while the application writes"


def upgrade(conn):
    conn.execute(text("CREATE TABLE big (id INTEGER PRIMARY KEY, label VARCHAR(40))"))
    for start in range(0, 40000, 4000):
        conn.execute(
            text("INSERT INTO big (id, label) VALUES (:id, :label)"),
            [{"id": i, "label": "row %d" % i} for i in range(start, start + 4000)],
        )
    time.sleep(1.0)  # hold the write lock long enough for the writer to queue behind it
"""


def test_an_application_writing_during_a_migration_loses_no_acknowledged_write(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(
        {"001_initial.py": (REAL_MIGRATIONS / "001_initial.py").read_text(), "002_big.py": LONG}
    )
    assert run_zos("db", "migrate", "--target", "1", env=backend.env(folder)).returncode == 0
    engine = get_engine(backend.settings())
    servers = metadata.tables["servers"]
    acknowledged: list[str] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def write() -> None:
        number = 0
        while not stop.is_set():
            server_id = f"s{number}"
            try:
                with engine.begin() as conn:
                    conn.execute(servers.insert().values(id=server_id, name="live"))
            except Exception as error:  # the test reports every failed write
                failures.append(error)
                return
            acknowledged.append(server_id)
            number += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        result = run_zos("db", "migrate", env=backend.env(folder), timeout=120)
        written_during = len(acknowledged)
    finally:
        stop.set()
        writer.join(timeout=60)
    with engine.connect() as conn:
        stored = set(conn.execute(text("SELECT id FROM servers")).scalars())
        big = conn.execute(text("SELECT COUNT(*) FROM big")).scalar_one()
    engine.dispose()
    assert result.returncode == 0, result.stderr
    assert failures == []
    assert written_during > 0
    assert stored == set(acknowledged)
    assert big == 40000


def test_a_connection_dropped_by_the_server_mid_run_fails_cleanly_and_can_be_resumed(
    server_backend: Backend, make_migrations: MakeMigrations
) -> None:
    backend = server_backend
    sleep = "SELECT pg_sleep(30)" if backend.name == "postgresql" else "SELECT SLEEP(30)"
    body = f"""
from sqlalchemy import text

VERSION = 2
DESCRIPTION = "Wait on the server"


def upgrade(conn):
    conn.execute(text("CREATE TABLE waited (id INTEGER PRIMARY KEY)"))
    conn.execute(text("{sleep}"))
"""
    one = SLOW.format(n=1, rows=10)
    folder = make_migrations({"001_thing_1.py": one, "002_wait.py": body})
    runner = start_migrate(backend, folder)
    admin = get_engine(backend.settings())
    try:
        with admin.connect() as conn:
            victim = wait_for_session_running(conn, backend, sleep)
            if backend.name == "postgresql":
                conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": victim})
            else:
                conn.execute(text(f"KILL {int(victim)}"))
            conn.commit()
        _, err = runner.communicate(timeout=60)
    finally:
        if runner.poll() is None:
            runner.kill()
        admin.dispose()
    assert runner.returncode == 1
    assert err.count("Error: ") == 1 and "Traceback" not in err
    assert "002_wait.py failed" in err
    recorded, _ = database_state(backend)
    if backend.name == "postgresql":
        assert recorded == {1: "applied"}
        assert "waited" not in inspect_tables(backend)
    else:
        assert recorded == {1: "applied", 2: "started"}
        with_table_dropped(backend, "waited")
        assert run_zos("db", "repair", "--forget", "2", env=backend.env(folder)).returncode == 0
    quick = make_migrations({"001_thing_1.py": one, "002_wait.py": body.replace(sleep, "SELECT 1")})
    # The file changed, so the fixed migration is a new file with the same number: allowed
    # because version 2 was never recorded as applied.
    finish = run_zos("db", "migrate", env=backend.env(quick))
    assert finish.returncode == 0, finish.stderr
    assert database_state(backend)[0] == {1: "applied", 2: "applied"}


def wait_for_session_running(conn: object, backend: Backend, statement: str) -> int:
    """The server-side id of the session running ``statement``, polled for up to 30 s."""
    query = (
        "SELECT pid FROM pg_stat_activity WHERE query = :q"
        if backend.name == "postgresql"
        else "SELECT id FROM information_schema.processlist WHERE info = :q"
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = conn.execute(text(query), {"q": statement}).scalar()  # type: ignore[attr-defined]
        conn.commit()  # type: ignore[attr-defined]
        if found is not None:
            return int(found)
        time.sleep(0.05)
    raise AssertionError(f"no session ran {statement!r} within 30 s")


def inspect_tables(backend: Backend) -> list[str]:
    engine = backend.engine()
    try:
        return inspect(engine).get_table_names()
    finally:
        engine.dispose()


def with_table_dropped(backend: Backend, table: str) -> None:
    engine = backend.engine()
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
    engine.dispose()
