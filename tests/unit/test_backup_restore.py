"""Backups as an operator meets them through the CLI, with the default relative ``./data/zos.db``:
pruning keeps what ``backups.keep`` says, killed backups leave nothing behind for long, and the
printed restore command, run with bash after an application crash, gives the backup back."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import MakeMigrations, migration, run_cli
from zos.backup import backup_sqlite, list_backups, restore_instructions

DATABASE = Path("data") / "zos.db"
_WAIT_SECONDS = 60  # an upper bound for a child to reach its checkpoint, never a pace


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rows(path: Path) -> list[tuple[int, str]]:
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        return conn.execute("SELECT id, name FROM item ORDER BY id").fetchall()
    finally:
        conn.close()


def zos(*args: str) -> tuple[int, str, str]:
    result = run_cli(*args)
    return result.exit_code, result.stdout, result.stderr


def write_config(keep: int) -> None:
    Path("config.yaml").write_text(f"backups:\n  keep: {keep}\n")


def add_items(path: Path, names: list[str]) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS item (id INTEGER PRIMARY KEY, name TEXT)")
        conn.executemany("INSERT INTO item (name) VALUES (?)", [(name,) for name in names])
    finally:
        conn.close()


def announced(out: str) -> tuple[Path, str]:
    """The backup path and the restore command printed by ``migrate`` or ``backup``."""
    lines = out.splitlines()
    first = next(line for line in lines if line.startswith("Backup of version"))
    path = Path(first.split(" written to ", 1)[1])
    command = lines[lines.index(first) + 2].strip()
    return path, command


@pytest.fixture
def migrated() -> Path:
    """The default ./data/zos.db, migrated by the real migrations and holding a few items."""
    assert zos("db", "migrate")[0] == 0
    add_items(DATABASE, ["one", "two", "three"])
    return DATABASE


@pytest.mark.parametrize("keep", [1, 2, 5])
def test_backups_keep_keeps_exactly_that_many_with_the_default_relative_path(
    migrated: Path, keep: int
) -> None:
    write_config(keep)
    made = []
    for _ in range(keep + 3):
        code, out, err = zos("db", "backup")
        assert (code, err) == (0, "")
        made.append(announced(out)[0])

    assert sorted(p.name for p in (migrated.parent / "backups").iterdir()) == sorted(
        p.name for p in made[-keep:]
    )
    assert made[-1].is_file()


def test_keep_1_never_deletes_the_backup_migrate_just_announced(
    make_migrations: MakeMigrations,
) -> None:
    write_config(1)
    folder = make_migrations(
        {
            "001_first.py": migration(1, "first", "conn.execute(text('CREATE TABLE a (x INT)'))"),
            "002_second.py": migration(2, "second", "conn.execute(text('CREATE TABLE b (x INT)'))"),
        }
    )
    env = {"ZOS_MIGRATIONS_DIR": str(folder)}
    assert run_cli("db", "migrate", "--target", "1", env=env).exit_code == 0
    zos("db", "backup")

    result = run_cli("db", "migrate", env=env)

    assert result.exit_code == 0
    path, _ = announced(result.stdout)
    assert path.is_file()
    assert [b.path.name for b in list_backups(DATABASE)] == [path.name]


BLOCKED_BACKUP = """
import sys, time
from pathlib import Path
import zos.backup

def blocked(database, target):
    Path(sys.argv[2]).touch()
    time.sleep(600)

zos.backup.copy_database = blocked
zos.backup.backup_sqlite(Path(sys.argv[1]), 1, keep=5)
"""


@pytest.fixture
def blocked_backup(migrated: Path, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A backup in another process, stopped half way through writing its copy."""
    marker = tmp_path / "copying"
    child = subprocess.Popen([sys.executable, "-c", BLOCKED_BACKUP, str(migrated), str(marker)])
    try:
        wait_for(marker, child)
        yield child
    finally:
        child.kill()
        child.wait()


def wait_for(marker: Path, child: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + _WAIT_SECONDS
    while not marker.exists():
        assert child.poll() is None, "the child process ended early"
        assert time.monotonic() < deadline, "the child process never got there"
        time.sleep(0.01)


def partials(database: Path) -> list[str]:
    return sorted(p.name for p in (database.parent / "backups").glob("*.partial"))


def test_a_partial_backup_of_a_killed_run_is_removed_by_the_next_backup_but_a_live_one_is_not(
    migrated: Path, blocked_backup: subprocess.Popen[bytes]
) -> None:
    live = partials(migrated)
    assert len(live) == 1

    during = backup_sqlite(migrated, 1, keep=5)
    assert partials(migrated) == live  # still being written by a live process
    assert rows(during.path) == rows(migrated)

    os.kill(blocked_backup.pid, signal.SIGKILL)
    blocked_backup.wait()
    assert partials(migrated) == live  # a killed run cleans nothing up itself

    after = backup_sqlite(migrated, 1, keep=5)
    assert partials(migrated) == []
    assert [b.path for b in list_backups(migrated)] == [after.path, during.path]


CRASHING_WRITER = """
import os, signal, sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA journal_mode = WAL")
conn.execute("PRAGMA wal_autocheckpoint = 0")
conn.execute("DELETE FROM item WHERE name = 'one'")
conn.execute("UPDATE item SET name = 'changed after the backup'")
conn.executemany("INSERT INTO item (name) VALUES (?)", [("new %d" % i,) for i in range(500)])
os.kill(os.getpid(), signal.SIGKILL)
"""


def crash_a_writer(database: Path) -> None:
    """An application writing in WAL mode, killed with SIGKILL: its commits stay in the -wal."""
    child = subprocess.run([sys.executable, "-c", CRASHING_WRITER, str(database)], check=False)
    assert child.returncode == -signal.SIGKILL


def test_following_the_printed_restore_command_after_a_crash_gives_the_backup_back_byte_for_byte(
    migrated: Path,
) -> None:
    code, out, _ = zos("db", "backup")
    assert code == 0
    backup, command = announced(out)
    kept = sha256(backup)
    expected = rows(backup)
    crash_a_writer(migrated)
    wal = Path(f"{migrated}-wal")
    assert wal.stat().st_size > 0
    assert rows(Path(str(migrated))) != expected  # the crash's changes are really there

    crash_a_writer(migrated)  # and once more, so a -wal is left behind after the last reader
    subprocess.run(["bash", "-c", command], check=True)

    assert sha256(migrated) == kept
    assert rows(migrated) == expected
    assert sha256(migrated) == kept  # reading it replayed nothing onto it


def test_restoring_a_database_behind_a_symbolic_link_removes_the_wal_beside_the_real_file(
    tmp_path: Path,
) -> None:
    real = tmp_path / "volume" / "zos.db"
    real.parent.mkdir()
    DATABASE.parent.mkdir()
    DATABASE.symlink_to(real)
    assert zos("db", "migrate")[0] == 0
    add_items(DATABASE, ["one", "two", "three"])
    code, out, _ = zos("db", "backup")
    assert code == 0
    backup, command = announced(out)
    kept, expected = sha256(backup), rows(backup)

    crash_a_writer(DATABASE)
    assert Path(f"{real}-wal").stat().st_size > 0  # SQLite keeps it beside the real file
    subprocess.run(["bash", "-c", command], check=True)

    assert DATABASE.is_symlink() and DATABASE.resolve() == real.resolve()
    assert sha256(real) == kept
    assert rows(DATABASE) == expected


@pytest.mark.parametrize(
    "folder", ["my data", "it's", 'say "hi"', "$HOME", "`date`", "ünï cødé", "a*b?[c]", "-rf"]
)
def test_the_restore_command_works_whatever_the_folder_is_called(
    tmp_path: Path, folder: str
) -> None:
    database = tmp_path / folder / "zos.db"
    database.parent.mkdir()
    add_items(database, ["one", "two"])
    link = tmp_path / "link.db"
    link.symlink_to(database)
    backup = backup_sqlite(link, 1, keep=5)
    kept, expected = sha256(backup.path), rows(backup.path)
    crash_a_writer(link)

    command = restore_instructions(backup, link).splitlines()[-1]
    subprocess.run(["bash", "-c", command], check=True, cwd=tmp_path)

    assert sha256(database) == kept
    assert rows(link) == expected


CRASH_MID_TRANSACTION = """
import os, signal, sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA journal_mode = DELETE")
conn.execute("PRAGMA cache_size = 1")  # spill changed pages into the file before COMMIT
conn.execute("BEGIN")
conn.execute("UPDATE item SET name = name || ' changed, never committed'")
conn.executemany("INSERT INTO item (name) VALUES (?)", [("x" * 500,) for _ in range(500)])
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_restore_command_removes_a_hot_journal_a_crash_left_beside_the_database(
    migrated: Path,
) -> None:
    """A process killed in the middle of a transaction in rollback-journal mode leaves a hot
    -journal; SQLite would play it back onto the restored file."""
    code, out, _ = zos("db", "backup")
    assert code == 0
    backup, command = announced(out)
    kept, expected = sha256(backup), rows(backup)
    conn = sqlite3.connect(migrated)
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.close()
    child = subprocess.run(
        [sys.executable, "-c", CRASH_MID_TRANSACTION, str(migrated)], check=False
    )
    assert child.returncode == -signal.SIGKILL
    assert Path(f"{migrated}-journal").stat().st_size > 0

    subprocess.run(["bash", "-c", command], check=True)

    assert sha256(migrated) == kept
    assert rows(migrated) == expected
    assert sha256(migrated) == kept
