"""``zos db migrate --dry-run`` on SQLite rehearses on a copy that leaves nothing behind: no
``-wal``/``-shm`` beside the live database, no copy in the temporary folder after a killed run,
and one ``Error:`` line when the database or the temporary folder cannot be used."""

from __future__ import annotations

import os
import resource
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import MakeMigrations, migration
from zos.snapshot import REHEARSAL_PREFIX, RehearsalError, claim, release, sqlite_copy

_WAIT_SECONDS = 60  # an upper bound for a child to reach its checkpoint, never a pace

BLOCKING_ONCE = """
import os, time
from pathlib import Path

marker = Path(os.environ["REHEARSAL_MARKER"])
if not marker.exists():
    marker.touch()
    time.sleep(600)
conn.execute(text("CREATE TABLE rehearsed (id INTEGER PRIMARY KEY)"))
"""


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """The temporary folder the dry runs of a test use (TMPDIR), empty at first."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    return folder


def zos_env(database: Path, migrations: Path, scratch: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZOS_")}
    env.update(
        ZOS_DATABASE_URL=f"sqlite:///{database}",
        ZOS_MIGRATIONS_DIR=str(migrations),
        TMPDIR=str(scratch),
        REHEARSAL_MARKER=str(scratch.parent / "rehearsing"),
    )
    return env


def dry_run(env: dict[str, str], **options: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zos", "db", "migrate", "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        **options,  # type: ignore[call-overload]  # preexec_fn, for the full-folder case
    )


def assert_one_error_line(result: subprocess.CompletedProcess[str], *parts: str) -> None:
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for part in parts:
        assert part in lines[0]


@pytest.fixture
def wal_database(tmp_path: Path) -> Path:
    """A database in WAL mode, as zos leaves it, with no connection open."""
    path = tmp_path / "data" / "zos.db"
    path.parent.mkdir()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO item (name) VALUES (?)", [(f"row {i} " + "x" * 100,) for i in range(2000)]
    )
    conn.execute("COMMIT")
    conn.close()
    return path


@pytest.fixture
def migrations(make_migrations: MakeMigrations) -> Path:
    return make_migrations({"001_first.py": migration(1, "first", BLOCKING_ONCE)})


def beside(database: Path) -> list[str]:
    # The run lock's file stays beside the database by design: a lock file removed on release
    # could be removed from under a runner that just opened it.
    return sorted(p.name for p in database.parent.iterdir() if p.name != database.name + ".lock")


def test_a_dry_run_leaves_no_wal_or_shm_beside_the_live_database(
    wal_database: Path, migrations: Path, scratch: Path
) -> None:
    env = zos_env(wal_database, migrations, scratch)
    (scratch.parent / "rehearsing").touch()

    result = dry_run(env)

    assert (result.returncode, result.stderr) == (0, "")
    assert "001: first" in result.stdout
    assert beside(wal_database) == ["zos.db"]
    assert os.listdir(scratch) == []


def test_a_killed_dry_run_leaves_its_copy_only_until_the_next_run(
    wal_database: Path, migrations: Path, scratch: Path
) -> None:
    env = zos_env(wal_database, migrations, scratch)
    child = subprocess.Popen(
        [sys.executable, "-m", "zos", "db", "migrate", "--dry-run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + _WAIT_SECONDS
        while not (scratch.parent / "rehearsing").exists():
            assert child.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        live = os.listdir(scratch)
        assert len(live) == 1 and live[0].startswith(REHEARSAL_PREFIX)

        during = dry_run(env)
        assert during.returncode == 0, during.stderr
        assert os.listdir(scratch) == live  # a live run's copy is never taken from under it

        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        assert os.listdir(scratch) == live  # SIGKILL runs no clean-up

        after = dry_run(env)
        assert after.returncode == 0, after.stderr
        assert os.listdir(scratch) == []
    finally:
        child.kill()
        child.wait()
    assert beside(wal_database) == ["zos.db"]


def test_a_dry_run_on_a_file_that_is_not_a_database_is_one_error_line(
    tmp_path: Path, migrations: Path, scratch: Path
) -> None:
    junk = tmp_path / "zos.db"
    junk.write_bytes(b"not a database\n" * 1000)

    result = dry_run(zos_env(junk, migrations, scratch))

    assert_one_error_line(result, str(junk), "not a database")
    assert os.listdir(scratch) == []
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("zos.db")) == ["zos.db"]


def test_a_dry_run_on_a_read_only_database_rehearses_and_creates_nothing_beside_it(
    wal_database: Path, migrations: Path, scratch: Path
) -> None:
    (scratch.parent / "rehearsing").touch()
    with read_only(wal_database):
        result = dry_run(zos_env(wal_database, migrations, scratch))

    assert (result.returncode, result.stderr) == (0, "")
    assert "001: first" in result.stdout
    assert beside(wal_database) == ["zos.db"]
    assert os.listdir(scratch) == []


def test_a_dry_run_with_a_full_temporary_folder_is_one_error_line(
    wal_database: Path, migrations: Path, scratch: Path
) -> None:
    assert wal_database.stat().st_size > 128 * 1024

    def no_room() -> None:
        # Any file growing past 64 KiB fails to grow, as on a full disk (the -shm needs 32).
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    result = dry_run(zos_env(wal_database, migrations, scratch), preexec_fn=no_room)

    assert_one_error_line(result, str(wal_database), str(scratch), "TMPDIR")
    assert os.listdir(scratch) == []
    assert beside(wal_database) == ["zos.db"]


def test_an_unreadable_database_cannot_be_copied_for_a_rehearsal(
    wal_database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # /tmp itself, since an unprivileged user cannot reach pytest's temporary folders.
    monkeypatch.setattr(tempfile, "tempdir", None)
    wal_database.chmod(0)
    with unprivileged(), pytest.raises(RehearsalError) as caught, sqlite_copy(wal_database):
        pass

    assert str(wal_database) in caught.value.message
    assert any(why in caught.value.message for why in ("unable to open", "Permission denied"))
    assert caught.value.exit_code == 1


@contextmanager
def unprivileged() -> Iterator[None]:
    """Drop root's power to read any file, which would hide what an operator meets."""
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(65534)  # nobody
    try:
        yield
    finally:
        os.seteuid(0)


@contextmanager
def read_only(database: Path) -> Iterator[None]:
    """Write-protect the file and its folder; as root, also mark the file immutable."""
    folder = database.parent
    database.chmod(0o444)
    folder.chmod(0o555)
    immutable = os.geteuid() == 0 and _chattr("+i", database)
    try:
        yield
    finally:
        if immutable:
            _chattr("-i", database)
        folder.chmod(0o755)
        database.chmod(0o644)


def _chattr(flag: str, path: Path) -> bool:
    try:
        done = subprocess.run(["chattr", flag, str(path)], capture_output=True, check=False)
    except FileNotFoundError:
        return False
    return done.returncode == 0


def test_the_clean_up_removes_only_unclaimed_folders_and_never_follows_a_link(
    tmp_path: Path, scratch: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("not zos's")
    link = scratch / f"{REHEARSAL_PREFIX}link"
    link.symlink_to(victim, target_is_directory=True)
    claimed, handle = claim(lambda: Path(tempfile.mkdtemp(prefix=REHEARSAL_PREFIX)))
    abandoned = Path(tempfile.mkdtemp(prefix=REHEARSAL_PREFIX))  # as a killed run leaves it
    try:
        with sqlite_copy(tmp_path / "no database yet.db") as copy:
            assert copy.parent.parent == scratch

        assert sorted(os.listdir(scratch)) == sorted([link.name, claimed.name])
        assert (victim / "keep").read_text() == "not zos's"
        assert not abandoned.exists()
    finally:
        release(handle)
