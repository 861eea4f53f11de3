"""A batched backfill of a big ``messages`` table on PostgreSQL beside eight concurrent writers:
zos's ``Batches`` migration against the same batches in a hand-written psycopg loop.

Every run starts from a fresh copy (``CREATE DATABASE … TEMPLATE``) of one prepared database.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import projects
from bigtable import ZOS_BACKFILL
from harness import Case, check_call
from projects import ZOS
from servers import Postgres

WRITERS = 8
BATCH_SIZE = 10_000
SERVERS = 10
CHANNELS = 100
FIRST_ID = 1_000_000_000_000_000_000  # message n has id FIRST_ID + n, 19 digits like the rest

# SQLite's migration text, with PostgreSQL's name for the column type.
ZOS_BACKFILL_PG = ZOS_BACKFILL.replace(
    "ADD COLUMN edited_at DATETIME", "ADD COLUMN edited_at TIMESTAMP"
)


def prepare_template(
    pg: Postgres, label: str, rows: int, zos_v1: Path, env: dict[str, str]
) -> None:
    """The version-1 schema by zos, and ``rows`` messages in it, as a template database."""
    url = pg.create(label)
    folder = pg_folder(zos_v1.parent / f"{label}-setup")
    check_call([*ZOS, "db", "migrate"], folder, projects.zos_url_env(env, zos_v1, url, folder))
    pg.execute(
        label,
        "INSERT INTO servers (id, name, threads_as_topics, created_at) "
        f"SELECT (900000000000000000 + i)::text, 'server ' || i, true, '2024-01-01' "
        f"FROM generate_series(0, {SERVERS - 1}) AS i",
        "INSERT INTO channels (id, server_id, name, type, created_at) "
        f"SELECT (910000000000000000 + i)::text, (900000000000000000 + i % {SERVERS})::text, "
        f"'channel ' || i, 'text', '2024-01-01' FROM generate_series(0, {CHANNELS - 1}) AS i",
        "INSERT INTO messages (id, channel_id, server_id, author_id, content, created_at, "
        "visibility_scope, has_media, has_links, ingested_at) "
        f"SELECT ({FIRST_ID} + i)::text, (910000000000000000 + i % {CHANNELS})::text, "
        f"(900000000000000000 + (i % {CHANNELS}) % {SERVERS})::text, "
        "(920000000000000000 + i % 5000)::text, "
        "'message ' || i || ': an ordinary line of chat, about as long as most of them', "
        "to_timestamp(1700000000 + i * 3), 'public', i % 20 = 0, i % 7 = 0, "
        f"to_timestamp(1700000000 + i * 3) FROM generate_series(1, {rows}) AS i",
    )
    pg.execute(label, "CHECKPOINT")
    # VACUUM cannot run inside a transaction block: through psql-less autocommit instead.
    import psycopg

    with psycopg.connect(pg.libpq(label), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def pg_folder(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@dataclass
class Writers:
    """``pgwriters.py`` running beside each run; keeps the longest wait of every run."""

    url: str
    keys: int
    stop_file: Path
    env: dict[str, str]
    longest_waits: list[float] = field(default_factory=list)
    inserts: int = 0
    _process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.stop()
        self.stop_file.unlink(missing_ok=True)
        script = Path(__file__).with_name("pgwriters.py")
        self._process = subprocess.Popen(
            [
                sys.executable,
                str(script),
                self.url,
                str(WRITERS),
                str(self.keys),
                str(self.stop_file),
            ],
            env=self.env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        if self._process.stdout.readline().strip() != "ready":
            self.stop()
            raise RuntimeError("the concurrent writers did not start")

    def stop(self) -> None:
        if self._process is None:
            return
        process, self._process = self._process, None
        self.stop_file.touch()
        output, _ = process.communicate(timeout=120)
        if process.returncode != 0:
            raise RuntimeError(f"the concurrent writers failed (exit {process.returncode})")
        report = json.loads(output.strip().splitlines()[-1])
        if report["errors"]:
            raise RuntimeError(f"a concurrent writer failed: {report['errors'][0]}")
        self.longest_waits.append(report["longest_wait_s"])
        self.inserts += report["inserts"]


def backfill_cases(
    pg: Postgres, template: str, root: Path, rows: int, env: dict[str, str]
) -> tuple[list[Case], list[Writers]]:
    """zos db migrate (Batches) and the hand-written loop, each from a copy of ``template``."""
    cases, writers = [], []
    zos_dir = pg_folder(root / "pg-backfill-zos")
    migrations = projects.zos_folder(
        zos_dir / "migrations", {"002_backfill_edited_at.py": ZOS_BACKFILL_PG}, with_version_1=True
    )
    loop_dir = pg_folder(root / "pg-backfill-loop")
    script = Path(__file__).with_name("pgloop.py")
    for directory, label, argv, case_env in (
        (
            zos_dir,
            "zos db migrate (Batches, 10,000 a batch)",
            [*ZOS, "db", "migrate", "--no-backup"],
            projects.zos_url_env(env, migrations, pg.url(zos_dir.name), zos_dir),
        ),
        (
            loop_dir,
            "hand-written psycopg loop, 10,000 a batch",
            [sys.executable, str(script), pg.libpq(loop_dir.name), str(BATCH_SIZE)],
            env,
        ),
    ):
        writer = Writers(pg.libpq(directory.name), rows, directory / "writers.stop", env)
        case = Case(label, argv, directory, case_env)
        case.prepare = _prepare(pg, template, directory.name, writer)
        case.verify = _verify(pg, directory.name, rows, writer)
        cases.append(case)
        writers.append(writer)
    return cases, writers


def _prepare(pg: Postgres, template: str, label: str, writer: Writers):  # type: ignore[no-untyped-def]
    def prepare() -> None:
        writer.stop()  # a run that failed leaves its writers running
        pg.create(label, template=template)
        writer.start()

    return prepare


def _verify(pg: Postgres, label: str, rows: int, writer: Writers):  # type: ignore[no-untyped-def]
    def verify() -> None:
        writer.stop()
        ((left, kept),) = pg.execute(
            label,
            "SELECT COUNT(*) FILTER (WHERE edited_at IS NULL), COUNT(*) FROM messages "
            f"WHERE id <= '{FIRST_ID + rows}'",
        )
        if left:
            raise AssertionError(f"{left} rows were not backfilled")
        if kept != rows:
            raise AssertionError(f"messages has {kept} of its {rows} rows")

    return verify
