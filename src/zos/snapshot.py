"""Consistent copies of an SQLite database, and scratch files that never outlive their run.

A scratch file or folder is claimed with an OS lock for as long as its run uses it; the system
drops the lock when the process dies, however it dies, so the next run removes exactly the
leftovers no live process holds. Reads the database it copies; never writes to it.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from zos.errors import ZosError

if sys.platform != "win32":
    import fcntl

__all__ = [
    "REHEARSAL_PREFIX",
    "RehearsalError",
    "claim",
    "copy_database",
    "release",
    "remove_abandoned",
    "sqlite_copy",
]

REHEARSAL_PREFIX = "zos-rehearsal-"
_BUSY_TIMEOUT_SECONDS = 10.0
_CLAIM_ATTEMPTS = 5
# What SQLite reports when the copy cannot be written, as opposed to the source not being read.
_WRITE_FAILURES = frozenset(
    {"SQLITE_FULL", "SQLITE_IOERR_WRITE", "SQLITE_IOERR_FSYNC", "SQLITE_IOERR_TRUNCATE"}
)


class RehearsalError(ZosError):
    """A dry run could not copy the SQLite database: unreadable, not a database, or no room."""


def copy_database(database: Path, target: Path) -> None:
    """Write one consistent snapshot of ``database`` (committed WAL frames included) to ``target``.

    ``target`` is a self-contained file in rollback-journal mode. Nothing is left beside
    ``database``: no ``-wal`` or ``-shm`` appears that was not already there.

    Raises:
        sqlite3.Error: the source cannot be opened or read, or the target cannot be written.
    """
    # A read-write connection that only reads, as in database.py: a mode=ro reader of a WAL
    # database would leave new -wal and -shm files behind, while this one removes them on close
    # when it is the last connection. SQLite opens a write-protected file read-only under
    # mode=rw (sqlite3_open_v2, SQLITE_OPEN_READWRITE), so a read-only file can still be copied.
    # One backup step (pages=-1) reads a single snapshot, which includes committed WAL frames
    # and never restarts however busy a writer in another process is.
    real = database.resolve()
    uri = f"{real.as_uri()}?mode=rw"
    if not os.access(real, os.W_OK) and not Path(f"{real}-wal").exists():
        # A read-only connection to a WAL database creates a -wal and -shm it cannot remove.
        # With no -wal, no connection is open and the main file holds every committed row;
        # immutable=1 reads it creating nothing. (A writer that starts during the copy is the
        # one thing it would not see, and that needs someone allowed to write the file.)
        uri = f"{real.as_uri()}?mode=ro&immutable=1"
    source = sqlite3.connect(uri, uri=True, timeout=_BUSY_TIMEOUT_SECONDS, isolation_level=None)
    try:
        source.execute("PRAGMA query_only = ON")
        copy = sqlite3.connect(target, timeout=_BUSY_TIMEOUT_SECONDS, isolation_level=None)
        try:
            source.backup(copy)
            # The copied header still says WAL; DELETE makes the copy one self-contained file.
            copy.execute("PRAGMA journal_mode = DELETE")
        finally:
            copy.close()
    finally:
        source.close()


def claim(create: Callable[[], Path]) -> tuple[Path, int]:
    """Create a scratch file or folder with ``create`` and hold an exclusive OS lock on it.

    Returns the path and the open descriptor holding the lock; closing it releases the claim,
    and so does the death of the process. A path removed by ``remove_abandoned`` between its
    creation and the lock is created anew.

    Raises:
        OSError: ``create`` failed, or the path kept vanishing before it could be locked.
    """
    if sys.platform == "win32":
        return create(), -1  # Windows refuses to delete an open file, which is claim enough
    for _ in range(_CLAIM_ATTEMPTS):
        path = create()
        try:
            handle = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            continue
        try:
            if sys.platform != "win32":
                # Blocking: a cleaner holds this lock only while it removes the path.
                fcntl.flock(handle, fcntl.LOCK_EX)
            if os.path.samestat(os.fstat(handle), os.lstat(path)):
                return path, handle
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(handle)
            raise
        os.close(handle)
    raise OSError(f"{path} was removed by another process while it was being created")


def release(handle: int) -> None:
    """Give up a claim made by ``claim``."""
    if handle >= 0:
        os.close(handle)


def remove_abandoned(paths: Iterable[Path]) -> list[Path]:
    """Remove those of ``paths`` that are this user's and that no live process has claimed.

    Best effort: a leftover that cannot be removed stays for the next run, and is no reason for
    this one to fail. Symbolic links and other users' files are never followed or touched. On
    Windows nothing is removed (no advisory lock tells a live run from a dead one there).
    Returns the paths removed.
    """
    removed: list[Path] = []
    if sys.platform == "win32":
        return removed
    for path in paths:
        try:
            handle = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue  # gone already, a symbolic link, or not ours to read
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            status = os.fstat(handle)
            if status.st_uid != os.geteuid() or not os.path.samestat(status, os.lstat(path)):
                continue
            if stat.S_ISDIR(status.st_mode):
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
        except OSError:
            continue  # BlockingIOError: a live run holds it
        finally:
            os.close(handle)
    return removed


@contextmanager
def sqlite_copy(database: Path) -> Iterator[Path]:
    """A throwaway, consistent copy of an SQLite database (or a new empty file), removed after.

    The copy lives in a ``zos-rehearsal-*`` folder of the temporary folder (``TMPDIR``), claimed
    for the run; folders left by killed runs are removed first.

    Raises:
        RehearsalError: the database is unreadable or not a database, or the temporary folder
            cannot hold the copy.
    """
    scratch = Path(tempfile.gettempdir())
    remove_abandoned(scratch.glob(f"{REHEARSAL_PREFIX}*"))
    try:
        folder, handle = claim(lambda: Path(tempfile.mkdtemp(prefix=REHEARSAL_PREFIX)))
    except OSError as error:
        raise RehearsalError(
            f"cannot make a throwaway copy of {database} in {scratch}: {_cause(error)};"
            " point TMPDIR at a writable folder with room for the copy"
        ) from error
    try:
        copy = folder / "rehearsal.db"
        if _exists(database):
            _rehearsal_copy(database, copy)
        yield copy
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        release(handle)


def _exists(database: Path) -> bool:
    try:
        database.stat()
    except FileNotFoundError:
        return False
    except OSError as error:
        # Not "no database yet": rehearsing on an empty copy would show a plan from version 0.
        raise RehearsalError(f"cannot rehearse on a copy of {database}: {_cause(error)}") from error
    return True


def _rehearsal_copy(database: Path, copy: Path) -> None:
    try:
        copy_database(database, copy)
    except sqlite3.Error as error:
        if getattr(error, "sqlite_errorname", "") in _WRITE_FAILURES:
            raise RehearsalError(
                f"cannot make a throwaway copy of {database} in {copy.parent.parent}:"
                f" {_first_line(error)}; free space there or point TMPDIR at a folder with room"
            ) from error
        raise RehearsalError(
            f"cannot rehearse on a copy of {database}: {_first_line(error)}"
        ) from error


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _cause(error: OSError) -> str:
    return error.strerror or str(error)
