"""SQLite backups: consistent with WAL and a live writer, named, unique, pruned, restorable, and
the server dump commands that never show a password. SQLite files in tmp_path only."""

from __future__ import annotations

import hashlib
import re
import shlex
import shutil
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy.engine import URL, make_url

from zos.backup import (
    Backup,
    BackupError,
    backup_sqlite,
    list_backups,
    restore_instructions,
    server_backup_command,
)
from zos.errors import ZosError

T0 = datetime(2024, 1, 2, 3, 4, 5, 123456)


def wal_connection(path: Path) -> sqlite3.Connection:
    """A connection in WAL mode that never checkpoints on its own, so commits stay in the -wal."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    return conn


def make_database(path: Path, rows: int = 3) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = wal_connection(path)
    conn.execute("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
    conn.executemany("INSERT INTO item (name) VALUES (?)", [(f"row {i}",) for i in range(rows)])
    conn.close()
    return path


def names(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [row[0] for row in conn.execute("SELECT name FROM item ORDER BY id")]
    finally:
        conn.close()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return make_database(tmp_path / "data" / "zos.db")


@pytest.fixture
def live_connection(database: Path) -> Iterator[sqlite3.Connection]:
    conn = wal_connection(database)
    yield conn
    conn.close()


def test_backup_holds_committed_rows_that_are_still_only_in_the_wal_file(
    database: Path, live_connection: sqlite3.Connection, tmp_path: Path
) -> None:
    live_connection.executemany("INSERT INTO item (name) VALUES (?)", [("wal 1",), ("wal 2",)])
    main_file_before = sha256(database)
    main_only = shutil.copyfile(database, tmp_path / "main-only.db")
    assert "wal 1" not in names(main_only)  # the rows really are only in the -wal file

    backup = backup_sqlite(database, version=1, keep=5)

    assert names(backup.path) == ["row 0", "row 1", "row 2", "wal 1", "wal 2"]
    assert sha256(database) == main_file_before  # a reader beside a live writer checkpoints nothing


def test_backup_taken_while_another_thread_keeps_writing_is_one_consistent_file(
    database: Path,
) -> None:
    setup = sqlite3.connect(database, isolation_level=None)
    setup.execute("CREATE TABLE pair (id INTEGER PRIMARY KEY, side TEXT NOT NULL)")
    setup.close()
    written, stop = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def write() -> None:
        conn = sqlite3.connect(database, isolation_level=None, timeout=30)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            count = 0
            while not stop.is_set():
                # Every transaction adds two rows: a torn copy would hold an odd number.
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany("INSERT INTO pair (side) VALUES (?)", [("left",), ("right",)])
                conn.execute("COMMIT")
                count += 1
                if count == 50:
                    written.set()
        except BaseException as error:
            failures.append(error)
        finally:
            written.set()
            conn.close()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert written.wait(timeout=30)
        backup = backup_sqlite(database, version=1, keep=5)
    finally:
        stop.set()
        writer.join(timeout=30)
    assert not failures and not writer.is_alive()

    copy = sqlite3.connect(backup.path)
    try:
        assert copy.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert copy.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        lefts, rights = copy.execute(
            "SELECT sum(side = 'left'), sum(side = 'right') FROM pair"
        ).fetchone()
        assert lefts == rights >= 50
    finally:
        copy.close()
    assert [p.name for p in backup.path.parent.iterdir()] == [backup.path.name]


def test_backup_is_named_after_stem_version_and_utc_time_in_backups_beside_the_database(
    database: Path,
) -> None:
    backup = backup_sqlite(database, version=7, keep=5, now=T0)

    assert backup == Backup(
        database.parent / "backups" / "zos-v007-20240102T030405123456Z.db", 7, T0
    )
    assert backup.path.is_file()
    assert list_backups(database) == [backup]


def test_an_aware_time_is_converted_to_naive_utc(database: Path) -> None:
    two_hours_east = timezone(timedelta(hours=2))
    backup = backup_sqlite(database, 1, keep=5, now=T0.replace(tzinfo=two_hours_east))

    assert backup.created_at == T0 - timedelta(hours=2)
    assert backup.path.name == "zos-v001-20240102T010405123456Z.db"


def test_the_default_time_is_now_in_utc(database: Path) -> None:
    before = datetime.now(UTC).replace(tzinfo=None)
    backup = backup_sqlite(database, 1, keep=5)
    after = datetime.now(UTC).replace(tzinfo=None)

    assert before <= backup.created_at <= after
    assert backup.created_at.tzinfo is None


def test_pruning_keeps_the_newest_backups_of_this_database_and_nothing_else_is_touched(
    database: Path,
) -> None:
    folder = database.parent / "backups"
    folder.mkdir()
    strangers = [
        "notes.txt",
        "other-v001-20240102T030405123456Z.db",  # another database's backup
        "zos-v2-v001-20240102T030405123456Z.db",  # the database zos-v2.db, not zos.db
        "zos-v001-hand-made.db",  # our prefix and suffix, but not a name zos writes
        "zos-v001-20241399T000000000000Z.db",  # shaped like ours, but month 13
    ]
    for name in strangers:
        (folder / name).write_text("keep me")

    made = [backup_sqlite(database, 1, keep=3, now=T0 + timedelta(seconds=i)) for i in range(5)]

    assert list_backups(database) == made[:1:-1]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        strangers + [b.path.name for b in made[2:]]
    )
    assert all((folder / name).read_text() == "keep me" for name in strangers)


def test_the_backup_just_written_survives_pruning_when_the_clock_went_back(
    database: Path,
) -> None:
    future = backup_sqlite(database, 1, keep=1, now=T0 + timedelta(days=1))
    backup = backup_sqlite(database, 2, keep=1, now=T0)

    assert list_backups(database) == [backup]
    assert not future.path.exists()


def test_two_backups_at_the_same_instant_never_overwrite_each_other(
    database: Path, live_connection: sqlite3.Connection
) -> None:
    first = backup_sqlite(database, 1, keep=5, now=T0)
    live_connection.execute("INSERT INTO item (name) VALUES ('later')")
    second = backup_sqlite(database, 1, keep=5, now=T0)

    assert second.created_at == T0 + timedelta(microseconds=1)
    assert second.path.name == "zos-v001-20240102T030405123457Z.db"
    assert list_backups(database) == [second, first]
    assert "later" not in names(first.path)
    assert "later" in names(second.path)


def test_taking_a_backup_leaves_the_source_unchanged_byte_for_byte(database: Path) -> None:
    before = sha256(database)
    beside = sorted(p.name for p in database.parent.iterdir())

    backup_sqlite(database, 1, keep=5)

    assert sha256(database) == before
    assert sorted(p.name for p in database.parent.iterdir()) == sorted([*beside, "backups"])


def test_no_partial_file_is_left_behind(database: Path) -> None:
    backup = backup_sqlite(database, 1, keep=5)

    assert [p.name for p in backup.path.parent.iterdir()] == [backup.path.name]


def test_a_missing_source_is_a_backup_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "zos.db"

    with pytest.raises(BackupError, match=re.escape(str(missing))) as caught:
        backup_sqlite(missing, 1, keep=5)

    assert isinstance(caught.value, ZosError) and caught.value.exit_code == 1
    assert "\n" not in caught.value.message
    assert not (missing.parent / "backups").exists()


def test_a_file_that_is_not_a_database_is_a_backup_error_naming_it(tmp_path: Path) -> None:
    junk = tmp_path / "zos.db"
    junk.write_bytes(b"this is not an sqlite database\n" * 200)
    before = sha256(junk)

    with pytest.raises(BackupError, match=re.escape(str(junk))) as caught:
        backup_sqlite(junk, 1, keep=5)

    assert "not a database" in caught.value.message
    assert sha256(junk) == before
    assert list((tmp_path / "backups").iterdir()) == []


def test_a_backup_folder_that_cannot_be_created_is_a_backup_error(database: Path) -> None:
    (database.parent / "backups").write_text("a file where the folder should be")

    with pytest.raises(BackupError, match=re.escape(str(database))):
        backup_sqlite(database, 1, keep=5)


def test_keep_must_be_at_least_one(database: Path) -> None:
    with pytest.raises(ValueError, match="keep"):
        backup_sqlite(database, 1, keep=0)


def test_list_backups_is_empty_without_a_backup_folder(database: Path) -> None:
    assert list_backups(database) == []


def test_restore_instructions_name_the_exact_paths_and_following_them_restores_the_data(
    tmp_path: Path,
) -> None:
    database = make_database(tmp_path / "my data" / "zos.db")
    backup = backup_sqlite(database, 1, keep=5)
    # A crashed process left a WAL with later changes; restoring must not replay it.
    writer = wal_connection(database)
    writer.execute("DELETE FROM item")
    writer.execute("INSERT INTO item (name) VALUES ('after the backup')")
    stale_wal = shutil.copyfile(Path(f"{database}-wal"), tmp_path / "stale-wal")
    writer.close()
    shutil.copyfile(stale_wal, Path(f"{database}-wal"))

    text = restore_instructions(backup, database)

    assert 1 <= len(text.splitlines()) <= 3
    command = text.splitlines()[-1]
    for path in (backup.path, database, Path(f"{database}-wal"), Path(f"{database}-shm")):
        assert shlex.quote(str(path)) in command
    subprocess.run(["sh", "-c", command], check=True)
    assert names(database) == ["row 0", "row 1", "row 2"]


PASSWORD = "s3cr:t@/pw"


@pytest.mark.parametrize("driver", ["postgresql", "postgresql+psycopg"])
def test_postgresql_dump_command_names_the_database_and_never_the_password(driver: str) -> None:
    url = URL.create(driver, "alice", PASSWORD, "db.example", 5433, "zos_prod")

    command = server_backup_command(url)

    assert "\n" not in command
    args = shlex.split(command)
    assert args[:2] == ["pg_dump", "--format=custom"]
    assert {"--host=db.example", "--port=5433", "--username=alice", "--dbname=zos_prod"} <= set(
        args
    )
    assert re.fullmatch(r"--file=zos-zos_prod-\d{8}T\d{6}Z\.dump", args[2])
    assert_no_password(command, url)


@pytest.mark.parametrize("driver", ["mysql+pymysql", "mariadb+pymysql", "mysql"])
def test_mariadb_dump_command_names_the_database_and_never_the_password(driver: str) -> None:
    url = URL.create(driver, "bob", PASSWORD, "127.0.0.1", 3306, "zos")

    command = server_backup_command(url)

    assert "\n" not in command
    args = shlex.split(command)
    assert args[0] == "mariadb-dump"
    assert {"--single-transaction", "--routines", "--user=bob", "--password"} <= set(args)
    assert args[-3:-1] == ["zos", ">"]
    assert re.fullmatch(r"zos-zos-\d{8}T\d{6}Z\.sql", args[-1])
    assert_no_password(command, url)


def assert_no_password(command: str, url: URL) -> None:
    assert quote(PASSWORD, safe="") in url.render_as_string(hide_password=False)
    for secret in (PASSWORD, quote(PASSWORD, safe=""), "s3cr"):
        assert secret not in command


def test_a_url_without_a_password_asks_for_none() -> None:
    command = server_backup_command(make_url("postgresql://postgres@localhost/zos"))

    assert "--password" not in shlex.split(command)


def test_sqlite_has_no_server_dump_command() -> None:
    with pytest.raises(ValueError, match="sqlite"):
        server_backup_command(make_url("sqlite:///data/zos.db"))


def test_a_postgresql_url_without_a_database_dumps_the_default_one_as_zos_connects_to_it() -> None:
    args = shlex.split(server_backup_command(make_url("postgresql+psycopg://alice@db/")))

    assert args[:2] == ["pg_dump", "--format=custom"]
    assert re.fullmatch(r"--file=zos-alice-\d{8}T\d{6}Z\.dump", args[2])
    assert not any(arg.startswith("--dbname") for arg in args)


def test_a_mariadb_url_without_a_database_is_one_backup_error_line() -> None:
    with pytest.raises(BackupError, match="names no database") as caught:
        server_backup_command(make_url("mysql+pymysql://root:s3cr3t@127.0.0.1:3306"))

    assert "\n" not in caught.value.message and "s3cr3t" not in caught.value.message
