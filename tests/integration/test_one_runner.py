"""One run at a time on every database: runners that overlap wait, re-read the history under
the run lock, and never apply, skip or repeat what another runner is doing."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path

from sqlalchemy import text

from tests.conftest import Backend, MakeMigrations, migration, run_cli
from tests.integration.processes import (
    finish,
    interrupt,
    one_error_line,
    scalar,
    start,
    states,
    tables,
    wait_for,
)

ITEMS = """
conn.execute(text("CREATE TABLE items (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)"))
conn.execute(
    text("INSERT INTO items (id, n) VALUES (:id, 0)"), [{{"id": i}} for i in range(1, {rows} + 1)]
)
"""

BACKFILL = """
import os
import time

from sqlalchemy import text

from zos.migrator.backfill import Batches

VERSION = 2
DESCRIPTION = "Count every item once"
BATCHES = Batches(table="items", key="id", size={size})


def backfill(conn, low, high):
    conn.execute(
        text("UPDATE items SET n = n + 1 WHERE id > :low AND id <= :high"),
        {{"low": low, "high": high}},
    )
    if high > {signal_after}:
        open(os.environ["ZOS_TEST_MARK"], "a").close()
    time.sleep({pause})
"""


def backfill_folder(
    make_migrations: MakeMigrations, rows: int, size: int, pause: float, signal_after: int = 0
) -> Path:
    return make_migrations(
        {
            "001_items.py": migration(1, "Items", ITEMS.format(rows=rows)),
            "002_count.py": BACKFILL.format(size=size, pause=pause, signal_after=signal_after),
        }
    )


def processed(backend: Backend) -> dict[int, int]:
    """How many items were processed how many times."""
    engine = backend.engine()
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT n, COUNT(*) FROM items GROUP BY n")).all()
    finally:
        engine.dispose()
    return {int(n): int(count) for n, count in rows}


def test_runners_started_together_after_a_killed_backfill_process_each_row_once(
    backend: Backend, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    folder = backfill_folder(make_migrations, rows=3000, size=5, pause=0.002, signal_after=500)
    assert run_cli("db", "migrate", "--target", "1", env=backend.env(folder)).exit_code == 0
    mark = tmp_path / "half-way"
    first = start(backend, folder, "db", "migrate", ZOS_TEST_MARK=str(mark))
    wait_for(mark, first)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert 0 < scalar(backend, "SELECT COUNT(*) FROM items WHERE n = 1") < 3000  # type: ignore[operator]
    runners = [
        start(backend, folder, "db", "migrate", ZOS_TEST_MARK=str(tmp_path / "again"))
        for _ in range(2)
    ]
    results = [finish(runner) for runner in runners]
    assert [code for code, _, _ in results] == [0, 0], results
    assert processed(backend) == {1: 3000}
    assert states(backend) == {1: "applied", 2: "applied"}
    assert sum("Applied 002" in out for _, out, _ in results) == 1


def test_two_runners_started_together_on_a_fresh_backfill_process_each_row_once(
    backend: Backend, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    folder = backfill_folder(make_migrations, rows=2000, size=50, pause=0)
    runners = [
        start(backend, folder, "db", "migrate", ZOS_TEST_MARK=str(tmp_path / "m")) for _ in range(2)
    ]
    results = [finish(runner) for runner in runners]
    assert [code for code, _, _ in results] == [0, 0], results
    assert processed(backend) == {1: 2000}
    assert states(backend) == {1: "applied", 2: "applied"}


SLOW_THEN_MARK = """
import os
import time

from sqlalchemy import text

VERSION = {version}
DESCRIPTION = "Slow {version}"
TRANSACTIONAL = {transactional}


def upgrade(conn):
    {first}
    open(os.environ["ZOS_TEST_MARK"] + "{version}", "a").close()
    time.sleep({pause})
    {then}
"""


def slow(
    version: int, pause: float, then: str = "pass", transactional: bool = True, first: str = "pass"
) -> str:
    """A migration that runs ``first``, writes its mark file, waits ``pause`` s, runs ``then``.

    A migration outside a transaction is recorded as started with its first change, so one
    that should be seen running changes something ``first``."""
    return SLOW_THEN_MARK.format(
        version=version, pause=pause, then=then, transactional=transactional, first=first
    )


def test_a_runner_never_applies_past_a_migration_another_runner_is_running(
    backend: Backend, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    """002 slow, 003 outside a transaction and failing, 004 a table: the second runner waits,
    then refuses because 003 is unfinished; 004 is never applied ahead of 003."""
    folder = make_migrations(
        {
            "001_t.py": migration(1, "T", "conn.execute(text('CREATE TABLE t (id INTEGER)'))"),
            "002_slow.py": slow(2, 1.0),
            "003_fails.py": slow(
                3,
                0.2,
                "raise RuntimeError('003 breaks')",
                transactional=False,
                first="conn.execute(text('CREATE TABLE three (id INTEGER)'))",
            ),
            "004_after.py": migration(
                4, "After", "conn.execute(text('CREATE TABLE after_four (id INTEGER)'))"
            ),
        }
    )
    mark = str(tmp_path / "mark")
    first = start(backend, folder, "db", "migrate", ZOS_TEST_MARK=mark)
    wait_for(Path(mark + "2"), first)
    second = start(backend, folder, "db", "migrate", ZOS_TEST_MARK=mark)
    code_first, _, err_first = finish(first)
    code_second, out_second, err_second = finish(second)
    assert code_first == 1 and "003_fails.py failed: 003 breaks" in one_error_line(err_first)
    assert code_second == 1, out_second
    assert "003_fails.py started at" in err_second and "Skipped" not in out_second
    assert "after_four" not in tables(backend)
    assert states(backend) == {1: "applied", 2: "applied", 3: "started"}


def test_status_names_the_running_migration_and_repair_refuses_while_it_runs(
    backend: Backend, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    folder = make_migrations(
        {
            "001_t.py": migration(1, "T", "conn.execute(text('CREATE TABLE t (id INTEGER)'))"),
            "002_outside.py": slow(
                2,
                1.5,
                "conn.execute(text('CREATE INDEX ix_t_id ON t (id)'))",
                transactional=False,
                first="conn.execute(text('CREATE TABLE two (id INTEGER)'))",
            ),
        }
    )
    mark = str(tmp_path / "mark")
    runner = start(backend, folder, "db", "migrate", ZOS_TEST_MARK=mark)
    wait_for(Path(mark + "2"), runner)
    status = run_cli("db", "status", env=backend.env(folder))
    history = run_cli("db", "history", "--json", env=backend.env(folder))
    repair = run_cli("db", "repair", "--forget", "2", env=backend.env(folder))
    code, out, err = finish(runner)
    assert "Migration run in progress: " in status.stdout, status.stdout + status.stderr
    assert "never finished" not in status.stdout + status.stderr
    if backend.name == "sqlite":
        assert "002 is running now" in status.stdout
    assert [entry["state"] for entry in json.loads(history.stdout)] == ["applied", "running"]
    assert repair.exit_code == 1
    assert one_error_line(repair.stderr).startswith("Error: a migration run is in progress (")
    assert code == 0, err
    assert "Applied 002" in out and "Migrated from version 0 to 2" in out
    assert states(backend) == {1: "applied", 2: "applied"}


def test_an_older_deployment_racing_a_newer_one_is_refused_not_reported_current(
    backend: Backend, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    one = migration(1, "T", "conn.execute(text('CREATE TABLE t (id INTEGER)'))")
    two = migration(2, "U", "conn.execute(text('CREATE TABLE u (id INTEGER)'))")
    newer = make_migrations({"001_t.py": one, "002_u.py": two, "003_slow.py": slow(3, 1.0)})
    older = make_migrations({"001_t.py": one, "002_u.py": two})
    mark = str(tmp_path / "mark")
    assert run_cli("db", "migrate", "--target", "2", env=backend.env(newer)).exit_code == 0
    new_run = start(backend, newer, "db", "migrate", ZOS_TEST_MARK=mark)
    wait_for(Path(mark + "3"), new_run)
    old_run = start(backend, older, "db", "migrate", ZOS_TEST_MARK=mark)
    assert finish(new_run)[0] == 0
    code, out, err = finish(old_run)
    assert code == 1, out
    assert "newer than the newest migration file" in one_error_line(err)


FAILING_SCHEMA_PART = """
import os
import time

from sqlalchemy import text

from zos.migrator.backfill import Batches

VERSION = 2
DESCRIPTION = "Add a column, then count"
BATCHES = Batches(table="items", key="id", size=100)


def upgrade(conn):
    conn.execute(text("ALTER TABLE items ADD COLUMN m INTEGER"))
    open(os.environ["ZOS_TEST_MARK"], "a").close()
    time.sleep({pause})
    {then}


def backfill(conn, low, high):
    conn.execute(
        text("UPDATE items SET n = n + 1 WHERE id > :low AND id <= :high"),
        {{"low": low, "high": high}},
    )
"""


def test_a_backfill_whose_schema_part_fails_leaves_nothing_to_repair(
    backend: Backend, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    folder = make_migrations(
        {
            "001_items.py": migration(1, "Items", ITEMS.format(rows=300)),
            "002_count.py": FAILING_SCHEMA_PART.format(pause=0, then="raise ValueError('no')"),
        }
    )
    env = backend.env(folder) | {"ZOS_TEST_MARK": str(tmp_path / "m")}
    result = run_cli("db", "migrate", env=env)
    assert result.exit_code == 1
    line = one_error_line(result.stderr)
    if backend.name == "mariadb":
        assert "marked unfinished" in line
        assert states(backend) == {1: "applied", 2: "started"}
        return
    assert "rolled back and the database is unchanged" in line
    assert states(backend) == {1: "applied"}
    fixed = FAILING_SCHEMA_PART.format(pause=0, then="pass")
    (folder / "002_count.py").write_text(fixed)
    assert run_cli("db", "migrate", env=env).exit_code == 0
    assert processed(backend) == {1: 300}


def test_a_backfill_killed_in_its_schema_part_resumes_without_repair(
    backend: Backend, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    if backend.name == "mariadb":
        return  # its DDL commits at once: the marker makes an operator look (tested above)
    folder = make_migrations(
        {
            "001_items.py": migration(1, "Items", ITEMS.format(rows=300)),
            "002_count.py": FAILING_SCHEMA_PART.format(pause=30, then="pass"),
        }
    )
    mark = tmp_path / "m"
    runner = start(backend, folder, "db", "migrate", ZOS_TEST_MARK=str(mark))
    wait_for(mark, runner)
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    assert states(backend) == {1: "applied"}
    (folder / "002_count.py").write_text(FAILING_SCHEMA_PART.format(pause=0, then="pass"))
    result = run_cli("db", "migrate", env=backend.env(folder) | {"ZOS_TEST_MARK": str(mark)})
    assert result.exit_code == 0, result.stderr
    assert processed(backend) == {1: 300}


def test_a_non_transactional_sqlite_migration_waits_for_an_application_write(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    if backend.name != "sqlite":
        return  # the servers lock rows, not the database
    folder = make_migrations(
        {
            "001_t.py": migration(1, "T", "conn.execute(text('CREATE TABLE t (id INTEGER)'))"),
            "002_outside.py": migration(
                2, "Outside", "conn.execute(text('CREATE INDEX ix_t ON t (id)'))"
            )
            + "\nTRANSACTIONAL = False\n",
        }
    )
    assert run_cli("db", "migrate", "--target", "1", env=backend.env(folder)).exit_code == 0
    engine = backend.engine()
    holding = threading.Event()
    release = threading.Event()

    def application_write() -> None:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t (id) VALUES (1)"))
            holding.set()
            release.wait(timeout=60)

    writer = threading.Thread(target=application_write)
    writer.start()
    holding.wait(timeout=60)
    runner = start(backend, folder, "db", "migrate")
    # The write lock is held well past the first quarter second the old runner waited.
    threading.Timer(1.0, release.set).start()
    code, _, err = finish(runner)
    writer.join()
    engine.dispose()
    assert code == 0, err
    assert states(backend) == {1: "applied", 2: "applied"}


def test_a_runner_interrupted_while_waiting_for_the_lock_changes_nothing(
    backend: Backend, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    folder = make_migrations(
        {
            "001_t.py": migration(1, "T", "conn.execute(text('CREATE TABLE t (id INTEGER)'))"),
            "002_slow.py": slow(2, 2.0),
        }
    )
    mark = str(tmp_path / "mark")
    first = start(backend, folder, "db", "migrate", ZOS_TEST_MARK=mark)
    wait_for(Path(mark + "2"), first)
    waiting = start(backend, folder, "db", "migrate", ZOS_TEST_MARK=mark)
    assert waiting.stderr is not None
    assert waiting.stderr.readline().startswith("Waiting for another migration to finish")
    interrupt(waiting, signal.SIGTERM)
    code, _, err = finish(waiting)
    assert code == 143
    assert "nothing was changed" in one_error_line(err)
    assert finish(first)[0] == 0
    assert states(backend) == {1: "applied", 2: "applied"}
