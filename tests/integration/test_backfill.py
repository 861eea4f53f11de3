"""Batched backfills: every row exactly once, one short transaction per batch, and a killed
run that resumes where it stopped."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.conftest import Backend, MakeMigrations, migration, run_cli, run_zos

ROWS = 2_500

CREATE_ITEMS = """
conn.execute(
    text("CREATE TABLE items (id {key_type} PRIMARY KEY, n INTEGER NOT NULL, label VARCHAR(40))")
)
conn.execute(
    text("INSERT INTO items (id, n, label) VALUES (:id, 0, :label)"),
    [{{"id": {key_expr}, "label": "item %d" % i}} for i in range({rows})],
)
"""

BACKFILL = """
import time

from sqlalchemy import text

from zos.migrator.backfill import Batches

VERSION = 2
DESCRIPTION = "Count every item once"

BATCHES = Batches(table="items", key="id", size={size})


def upgrade(conn):
    conn.execute(text("CREATE TABLE touched (id INTEGER PRIMARY KEY)"))


def backfill(conn, low, high):
    conn.execute(
        text("UPDATE items SET n = n + 1 WHERE id > :low AND id <= :high"),
        {{"low": low, "high": high}},
    )
    time.sleep({pause})
"""


def folder_for(
    make_migrations: MakeMigrations, *, size: int, pause: float = 0.0, text_keys: bool = False
) -> Path:
    key_type, key_expr = ("VARCHAR(26)", '"k%06d" % i') if text_keys else ("INTEGER", "i * 3 + 7")
    return make_migrations(
        {
            "001_items.py": migration(
                1, "Items", CREATE_ITEMS.format(key_type=key_type, key_expr=key_expr, rows=ROWS)
            ),
            "002_count.py": BACKFILL.format(size=size, pause=pause),
        }
    )


def counts(backend: Backend) -> dict[int, int]:
    """How many rows were processed how many times."""
    engine = backend.engine()
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT n, COUNT(*) FROM items GROUP BY n")).all()
    engine.dispose()
    return {int(n): int(c) for n, c in rows}


def recorded(backend: Backend) -> dict[int, str]:
    engine = backend.engine()
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT version, state FROM _schema_version")).all()
    engine.dispose()
    return {row.version: row.state for row in rows}


@pytest.mark.parametrize("text_keys", [False, True], ids=["integer-keys", "text-keys"])
def test_a_backfill_processes_every_row_exactly_once_in_batches(
    backend: Backend, make_migrations: MakeMigrations, text_keys: bool
) -> None:
    folder = folder_for(make_migrations, size=400, text_keys=text_keys)
    result = run_zos("db", "migrate", env=backend.env(folder))
    assert result.returncode == 0, result.stderr
    assert counts(backend) == {1: ROWS}
    assert recorded(backend) == {1: "applied", 2: "applied"}
    assert "Migrated from version 0 to 2" in result.stdout
    engine = backend.engine()
    with engine.connect() as conn:
        leftover = conn.execute(text("SELECT COUNT(*) FROM _schema_backfill")).scalar()
    engine.dispose()
    assert leftover == 0


def test_backfill_progress_is_reported_batch_by_batch(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    from zos import migrator
    from zos.migrator import EventKind, MigrationEvent

    events: list[MigrationEvent] = []
    folder = folder_for(make_migrations, size=1000)
    migrator.migrate(backend.settings(folder), on_event=events.append)
    progress = [(e.rows_done, e.rows_total) for e in events if e.kind == EventKind.PROGRESS]
    assert progress == [(1000, ROWS), (2000, ROWS), (ROWS, ROWS)]


def test_a_killed_backfill_resumes_where_it_stopped_and_counts_each_row_once(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = folder_for(make_migrations, size=100, pause=0.02)
    rng = random.Random(7)
    engine = backend.engine()
    kills = 0
    try:
        for _ in range(3):
            runner = subprocess.Popen(
                [sys.executable, "-m", "zos", "db", "migrate"],
                env=backend.env(folder),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            # Wait until some batch of this run has committed, then kill at a random moment.
            deadline = time.monotonic() + 30
            while runner.poll() is None and time.monotonic() < deadline:
                with engine.connect() as conn:
                    has_table = conn.dialect.has_table(conn, "_schema_backfill")
                    done = (
                        conn.execute(text("SELECT MAX(rows_done) FROM _schema_backfill")).scalar()
                        if has_table
                        else None
                    )
                if done:
                    break
                time.sleep(0.01)
            time.sleep(rng.uniform(0, 0.2))
            if runner.poll() is None:
                runner.send_signal(signal.SIGKILL)
                kills += 1
            runner.communicate(timeout=30)
            processed = counts(backend)
            assert set(processed) <= {0, 1}, processed  # nothing was processed twice
        status = run_cli("db", "status", env=backend.env(folder))
        assert status.exit_code == 0, status.stderr
        assert "  2: Count every item once" in status.stdout
        finish = run_zos("db", "migrate", env=backend.env(folder))
        assert finish.returncode == 0, finish.stderr
    finally:
        engine.dispose()
    assert kills >= 1
    assert counts(backend) == {1: ROWS}
    assert recorded(backend) == {1: "applied", 2: "applied"}


FAILING_BACKFILL = """
from sqlalchemy import text

from zos.migrator.backfill import Batches

VERSION = 2
DESCRIPTION = "Fail half-way"
BATCHES = Batches(table="items", key="id", size=500)


def backfill(conn, low, high):
    conn.execute(
        text("UPDATE items SET n = n + 1 WHERE id > :low AND id <= :high"),
        {"low": low, "high": high},
    )
    if high > 4000:
        raise ValueError("bad row")
"""


def test_a_failing_batch_is_rolled_back_and_earlier_batches_are_kept(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = folder_for(make_migrations, size=500)
    (folder / "002_count.py").write_text(FAILING_BACKFILL)
    result = run_cli("db", "migrate", env=backend.env(folder))
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: 002_count.py failed: bad row; the batch of keys above ")
    assert "earlier batches are kept" in result.stderr
    processed = counts(backend)
    assert set(processed) == {0, 1} and processed[1] % 500 == 0
    assert recorded(backend) == {1: "applied", 2: "started"}


def test_a_backfill_without_both_parts_is_refused_before_anything_runs(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = folder_for(make_migrations, size=500)
    (folder / "002_count.py").write_text(
        "from zos.migrator.backfill import Batches\n\nVERSION = 2\nDESCRIPTION = 'Half'\n"
        "BATCHES = Batches(table='items', key='id')\n"
    )
    result = run_cli("db", "migrate", env=backend.env(folder))
    assert result.exit_code == 1
    assert (
        "002_count.py: a backfill needs both BATCHES = Batches(...) and backfill(" in result.stderr
    )
