"""The big-table cases: a full rebuild of a large ``messages`` table, ADD COLUMN, and a batched
backfill beside a concurrent writer. Every run starts from a copy of one prepared file.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import projects
from harness import Case, check_call
from projects import DB_NAME, SQLITE_SHELL, ZOS

MESSAGE_COLUMNS = (
    "id, channel_id, server_id, author_id, content, created_at, visibility_scope, "
    "reactions_aggregate, reply_to_id, thread_id, has_media, has_links, ingested_at, deleted_at"
)
SERVERS = 10
CHANNELS = 100  # channel c belongs to server c % SERVERS
MESSAGE_INDEXES = {
    "ix_messages_channel_created",
    "ix_messages_author_created",
    "ix_messages_server_created",
}


def prepare_big_database(
    path: Path, rows: int, zos_v1: Path, alembic_ini: Path, env: dict[str, str]
) -> None:
    """Build the version-1 schema with zos, stamp Alembic at the same revision, fill the rows.

    The file carries both tools' version tables, so each can migrate it from version 1.
    """
    check_call([*ZOS, "db", "migrate"], path.parent, projects.zos_env(env, zos_v1, path))
    check_call(projects.alembic_argv(alembic_ini, "stamp", "v0001"), path.parent, env)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            "INSERT INTO servers (id, name, threads_as_topics, created_at) "
            "SELECT CAST(900000000000000000 + i AS TEXT), 'server ' || i, 1, "
            "'2024-01-01 00:00:00.000000' FROM n",
            (SERVERS - 1,),
        )
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            "INSERT INTO channels (id, server_id, name, type, created_at) "
            "SELECT CAST(910000000000000000 + i AS TEXT), "
            "CAST(900000000000000000 + i % ? AS TEXT), 'channel ' || i, 'text', "
            "'2024-01-01 00:00:00.000000' FROM n",
            (CHANNELS - 1, SERVERS),
        )
        # Snowflake-like ids of one length, so text order is numeric order, as on Discord.
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            f"INSERT INTO messages ({MESSAGE_COLUMNS}) "
            "SELECT CAST(1000000000000000000 + i AS TEXT), "
            "CAST(910000000000000000 + i % ? AS TEXT), "
            "CAST(900000000000000000 + (i % ?) % ? AS TEXT), "
            "CAST(920000000000000000 + i % 5000 AS TEXT), "
            "'message ' || i || ': an ordinary line of chat, about as long as most of them', "
            "datetime(1700000000 + i * 3, 'unixepoch') || '.000000', 'public', "
            "NULL, NULL, NULL, i % 20 = 0, i % 7 = 0, "
            "datetime(1700000000 + i * 3, 'unixepoch') || '.000000', NULL FROM n",
            (rows, CHANNELS, CHANNELS, SERVERS),
        )
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def hand_typed_rebuild_sql() -> str:
    """SQLite's documented 12-step table rebuild, as an operator would type it in the shell."""
    return f"""\
.bail on
PRAGMA foreign_keys = OFF;
BEGIN;
CREATE TABLE new_messages (
    id VARCHAR(32) NOT NULL,
    channel_id VARCHAR(32) NOT NULL,
    server_id VARCHAR(32),
    author_id VARCHAR(32) NOT NULL,
    content TEXT,
    created_at DATETIME NOT NULL,
    visibility_scope VARCHAR(64) NOT NULL,
    reactions_aggregate JSON,
    reply_to_id VARCHAR(32),
    thread_id VARCHAR(32),
    has_media BOOLEAN NOT NULL,
    has_links BOOLEAN NOT NULL,
    ingested_at DATETIME NOT NULL,
    deleted_at DATETIME,
    CONSTRAINT pk_messages PRIMARY KEY (id),
    CONSTRAINT fk_messages_channel_id_channels FOREIGN KEY(channel_id) REFERENCES channels (id),
    CONSTRAINT fk_messages_server_id_servers FOREIGN KEY(server_id) REFERENCES servers (id)
);
INSERT INTO new_messages ({MESSAGE_COLUMNS}) SELECT {MESSAGE_COLUMNS} FROM messages;
DROP TABLE messages;
ALTER TABLE new_messages RENAME TO messages;
CREATE INDEX ix_messages_channel_created ON messages (channel_id, created_at);
CREATE INDEX ix_messages_author_created ON messages (author_id, created_at);
CREATE INDEX ix_messages_server_created ON messages (server_id, created_at);
PRAGMA foreign_key_check;
COMMIT;
PRAGMA foreign_keys = ON;
"""


ZOS_REBUILD = '''\
"""Allow messages without content: a full rebuild of the messages table on SQLite."""

from sqlalchemy import Connection

from zos.migrator import ops

VERSION = 2
DESCRIPTION = "Make messages.content nullable"


def upgrade(conn: Connection) -> None:
    ops.alter_column(conn, "messages", "content", nullable=True)
'''

ZOS_ADD_COLUMN = '''\
"""Record when a message was edited."""

from sqlalchemy import Column, Connection, DateTime

from zos.migrator import ops

VERSION = 2
DESCRIPTION = "Add messages.edited_at"


def upgrade(conn: Connection) -> None:
    ops.add_column(conn, "messages", Column("edited_at", DateTime, nullable=True))
'''

ALEMBIC_REBUILD_BODY = """\
    with op.batch_alter_table("messages") as batch_op:
        batch_op.alter_column("content", nullable=True)"""

ALEMBIC_ADD_COLUMN_BODY = """\
    op.add_column("messages", sa.Column("edited_at", sa.DateTime(), nullable=True))"""


def zos_ops_missing(env: dict[str, str], name: str) -> str | None:
    """Why ``zos.migrator.ops.<name>`` cannot be used yet, or None when it can."""
    return _import_problem(f"from zos.migrator.ops import {name}", env)


def _import_problem(statement: str, env: dict[str, str]) -> str | None:
    done = subprocess.run(
        [sys.executable, "-c", statement], env=env, capture_output=True, text=True
    )
    if done.returncode == 0:
        return None
    lines = done.stderr.strip().splitlines()
    return f"not available ({lines[-1] if lines else 'import failed'})"


@dataclass
class BigTableCases:
    """Directories and cases that all start from one prepared big file."""

    root: Path
    big: Path
    rows: int
    env: dict[str, str]

    def case_dir(self, name: str) -> Path:
        directory = self.root / name
        directory.mkdir(parents=True, exist_ok=True)
        return directory

    def copy_into(self, directory: Path) -> None:
        """Put a fresh copy of the prepared file into ``directory`` as its database."""
        projects.fresh_copy(self.big, directory / DB_NAME)

    def rebuild_cases(self) -> list[Case]:
        """(a) the sqlite3 shell, (b) Alembic batch mode, (c) zos ops.alter_column."""
        shell_dir = self.case_dir("rebuild-sqlite3")
        script = shell_dir / "rebuild.sql"
        script.write_text(hand_typed_rebuild_sql(), encoding="utf-8")
        alembic_dir = self.case_dir("rebuild-alembic")
        ini = projects.alembic_project(
            alembic_dir / "project",
            {
                **projects.alembic_version_1(),
                **projects.alembic_next("v0002", "v0001", ALEMBIC_REBUILD_BODY),
            },
            self.env,
        )
        zos_dir = self.case_dir("rebuild-zos")
        migrations = projects.zos_folder(
            zos_dir / "migrations", {"002_content_nullable.py": ZOS_REBUILD}, with_version_1=True
        )
        return [
            Case(
                "sqlite3 shell, 12 steps by hand",
                [SQLITE_SHELL, DB_NAME],
                shell_dir,
                self.env,
                prepare=lambda: self.copy_into(shell_dir),
                verify=lambda: self.verify_rebuilt(shell_dir / DB_NAME),
                stdin=script,
            ),
            Case(
                "alembic upgrade head (batch_alter_table)",
                projects.alembic_argv(ini, "upgrade", "head"),
                alembic_dir,
                self.env,
                prepare=lambda: self.copy_into(alembic_dir),
                verify=lambda: self.verify_rebuilt(alembic_dir / DB_NAME),
            ),
            Case(
                "zos db migrate --no-backup (ops.alter_column)",
                [*ZOS, "db", "migrate", "--no-backup"],
                zos_dir,
                projects.zos_env(self.env, migrations, zos_dir / DB_NAME),
                prepare=lambda: self.copy_into(zos_dir),
                verify=lambda: self.verify_rebuilt(zos_dir / DB_NAME),
                unavailable=zos_ops_missing(self.env, "alter_column"),
            ),
        ]

    def add_column_cases(self) -> list[Case]:
        """(d) ADD COLUMN: the sqlite3 shell, Alembic op.add_column, zos ops.add_column."""
        shell_dir = self.case_dir("add-sqlite3")
        script = shell_dir / "add.sql"
        script.write_text(
            ".bail on\nALTER TABLE messages ADD COLUMN edited_at DATETIME;\n", encoding="utf-8"
        )
        alembic_dir = self.case_dir("add-alembic")
        ini = projects.alembic_project(
            alembic_dir / "project",
            {
                **projects.alembic_version_1(),
                **projects.alembic_next(
                    "v0002", "v0001", ALEMBIC_ADD_COLUMN_BODY, "import sqlalchemy as sa\n"
                ),
            },
            self.env,
        )
        zos_dir = self.case_dir("add-zos")
        migrations = projects.zos_folder(
            zos_dir / "migrations", {"002_add_edited_at.py": ZOS_ADD_COLUMN}, with_version_1=True
        )
        return [
            Case(
                "sqlite3 shell, ALTER TABLE ADD COLUMN",
                [SQLITE_SHELL, DB_NAME],
                shell_dir,
                self.env,
                prepare=lambda: self.copy_into(shell_dir),
                verify=lambda: self.verify_added(shell_dir / DB_NAME),
                stdin=script,
            ),
            Case(
                "alembic upgrade head (op.add_column)",
                projects.alembic_argv(ini, "upgrade", "head"),
                alembic_dir,
                self.env,
                prepare=lambda: self.copy_into(alembic_dir),
                verify=lambda: self.verify_added(alembic_dir / DB_NAME),
            ),
            Case(
                "zos db migrate --no-backup (ops.add_column)",
                [*ZOS, "db", "migrate", "--no-backup"],
                zos_dir,
                projects.zos_env(self.env, migrations, zos_dir / DB_NAME),
                prepare=lambda: self.copy_into(zos_dir),
                verify=lambda: self.verify_added(zos_dir / DB_NAME),
                unavailable=zos_ops_missing(self.env, "add_column"),
            ),
        ]

    def verify_rebuilt(self, path: Path) -> None:
        """Every row is still there, content is nullable, indexes and foreign keys are back."""
        with _reader(path) as conn:
            columns = {row[1]: row for row in conn.execute("PRAGMA table_info(messages)")}
            if columns["content"][3] != 0:
                raise AssertionError("messages.content is still NOT NULL")
            self.check_kept(conn)

    def verify_added(self, path: Path) -> None:
        with _reader(path) as conn:
            columns = {row[1] for row in conn.execute("PRAGMA table_info(messages)")}
            if "edited_at" not in columns:
                raise AssertionError("messages.edited_at was not added")
            self.check_kept(conn)

    def check_kept(self, conn: sqlite3.Connection) -> None:
        count = conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
        if count != self.rows:
            raise AssertionError(f"messages has {count} rows, not {self.rows}")
        indexes = {row[1] for row in conn.execute("PRAGMA index_list(messages)")}
        if missing := MESSAGE_INDEXES - indexes:
            raise AssertionError(f"indexes missing: {sorted(missing)}")
        keys = conn.execute("PRAGMA foreign_key_list(messages)").fetchall()
        if len(keys) != 2:
            raise AssertionError(f"messages has {len(keys)} foreign keys, not 2")


def _reader(path: Path) -> closing[sqlite3.Connection]:
    """A short look at a result file, closed afterwards (after the timed process has exited)."""
    return closing(sqlite3.connect(path))


# --- 5. batched backfill beside a concurrent writer -----------------------------------------

# Written against the backfill API as it is being built (zos.migrator.backfill): a migration
# declares BATCHES and backfill(conn, low, high); its optional upgrade() is the schema part.
ZOS_BACKFILL = '''\
"""Add messages.edited_at and fill it from created_at, in batches."""

from sqlalchemy import Connection, text

from zos.migrator.backfill import Batches

VERSION = 2
DESCRIPTION = "Backfill messages.edited_at"
BATCHES = Batches(table="messages", key="id", size=10_000)


def upgrade(conn: Connection) -> None:
    conn.execute(text("ALTER TABLE messages ADD COLUMN edited_at DATETIME"))


def backfill(conn: Connection, low: str, high: str) -> None:
    conn.execute(
        text("UPDATE messages SET edited_at = created_at WHERE id > :low AND id <= :high"),
        {"low": low, "high": high},
    )
'''


@dataclass
class ConcurrentWriter:
    """``writer.py`` running beside each run; keeps the longest wait of every run."""

    database: Path
    env: dict[str, str]
    longest_waits: list[float] = field(default_factory=list)
    inserts: int = 0
    _process: subprocess.Popen[str] | None = None

    @property
    def stop_file(self) -> Path:
        return self.database.with_name("writer.stop")

    def start(self) -> None:
        self.stop()
        self.stop_file.unlink(missing_ok=True)
        script = Path(__file__).with_name("writer.py")
        self._process = subprocess.Popen(
            [sys.executable, str(script), str(self.database), str(self.stop_file)],
            env=self.env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        if self._process.stdout.readline().strip() != "ready":
            raise RuntimeError("the concurrent writer did not start")

    def stop(self) -> None:
        if self._process is None:
            return
        process, self._process = self._process, None
        self.stop_file.touch()
        output, _ = process.communicate(timeout=60)
        if process.returncode != 0:
            raise RuntimeError(f"the concurrent writer failed (exit {process.returncode})")
        report = json.loads(output.strip().splitlines()[-1])
        self.longest_waits.append(report["longest_wait_s"])
        self.inserts += report["inserts"]


def zos_backfill_case(bench: BigTableCases) -> tuple[Case, ConcurrentWriter]:
    """THE ZOS BACKFILL COMMAND: ``zos db migrate --no-backup`` on a batched-backfill migration.

    Skipped with "not available yet" while ``zos.migrator.backfill`` cannot be imported. When
    the backfill API settles, adjust ``ZOS_BACKFILL`` above to it; nothing else here depends on it.
    """
    directory = bench.case_dir("backfill-zos")
    migrations = projects.zos_folder(
        directory / "migrations", {"002_backfill_edited_at.py": ZOS_BACKFILL}, with_version_1=True
    )
    database = directory / DB_NAME
    writer = ConcurrentWriter(database, bench.env)
    missing = _import_problem("import zos.migrator.backfill", bench.env)

    def prepare() -> None:
        writer.stop()  # a run that failed leaves its writer running
        bench.copy_into(directory)
        writer.start()

    def verify() -> None:
        writer.stop()
        with _reader(database) as conn:
            left = conn.execute("SELECT COUNT(*) FROM messages WHERE edited_at IS NULL")
            if (count := left.fetchone()[0]) != 0:
                raise AssertionError(f"{count} rows were not backfilled")
            bench.check_kept(conn)

    case = Case(
        "zos db migrate --no-backup (batched backfill)",
        [*ZOS, "db", "migrate", "--no-backup"],
        directory,
        projects.zos_env(bench.env, migrations, database),
        prepare=prepare,
        verify=verify,
        unavailable="not available yet" if missing else None,
    )
    return case, writer
