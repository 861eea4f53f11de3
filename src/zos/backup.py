"""Backups: consistent single-file copies of an SQLite database in ``backups/`` beside it, pruned
to the newest few, and the commands an operator runs to restore one or to dump a server database.
Never writes to the database it copies, and deletes only files named as its own: older backups
beyond ``backups.keep``, and partial copies that a killed run left behind.
"""

from __future__ import annotations

import os
import re
import shlex
import sqlite3
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import URL

from zos.errors import ZosError
from zos.snapshot import claim, copy_database, release, remove_abandoned

__all__ = [
    "Backup",
    "BackupError",
    "backup_sqlite",
    "list_backups",
    "restore_instructions",
    "server_backup_command",
]

BACKUP_FOLDER = "backups"
_TIMESTAMP = "%Y%m%dT%H%M%S%f"
_PARTIAL = ".partial"


class BackupError(ZosError):
    """A backup could not be written: the source is missing or unreadable, or the folder is not."""


@dataclass(frozen=True)
class Backup:
    """One backup file and what its name says about it."""

    path: Path
    version: int
    created_at: datetime  # naive UTC


def backup_sqlite(database: Path, version: int, keep: int, now: datetime | None = None) -> Backup:
    """Copy ``database`` into ``backups/`` beside it, then keep only its newest ``keep`` backups.

    The name is ``<stem>-v<version:03d>-<UTC timestamp>Z.db``. An existing file is never replaced:
    when the name is taken, the timestamp moves on by one microsecond until it is free, so names
    stay unique and still sort in the order the backups were taken. The backup just written is
    never pruned, even when the clock has gone back.

    Raises:
        BackupError: the source is missing or not a database, or the copy cannot be written or
            an old backup cannot be removed.
    """
    if version < 0 or keep < 1:
        raise ValueError(f"version must be >= 0 and keep >= 1, got {version} and {keep}")
    if not database.is_file():
        raise BackupError(f"cannot back up {database}: the file does not exist")
    folder = (database.parent / BACKUP_FOLDER).absolute()
    try:
        folder.mkdir(exist_ok=True)
        # Copies left by killed runs: each live run holds a lock on its own, so what is
        # unlocked belongs to no one (an age limit would race a slow copy of a big database).
        prefix = f".{database.stem}-"
        remove_abandoned(
            path
            for path in folder.iterdir()
            if path.name.startswith(prefix) and path.name.endswith(_PARTIAL)
        )
        partial, handle = claim(lambda: _temporary_file(folder, prefix))
    except OSError as error:
        raise BackupError(f"cannot back up {database} into {folder}: {_cause(error)}") from error
    try:
        _copy(database, partial)
        created_at = _utc(now)
        backup = _publish(partial, folder, database, version, created_at)
    finally:
        partial.unlink(missing_ok=True)
        release(handle)
    _prune(database, backup, keep)
    return backup


def list_backups(database: Path) -> list[Backup]:
    """The backups of ``database`` in ``backups/`` beside it, newest first, with absolute paths."""
    pattern = re.compile(rf"{re.escape(database.stem)}-v(\d{{3,}})-(\d{{8}}T\d{{12}})Z\.db")
    folder = (database.parent / BACKUP_FOLDER).absolute()
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = pattern.fullmatch(path.name)
        if match is None or not path.is_file():
            continue
        try:
            created_at = datetime.strptime(match[2], _TIMESTAMP)
        except ValueError:
            continue  # shaped like ours but no real date: not a file zos wrote
        found.append(Backup(path, int(match[1]), created_at))
    return sorted(found, key=lambda b: (b.created_at, b.version, b.path.name), reverse=True)


def restore_instructions(backup: Backup, database: Path) -> str:
    """The shell steps that put ``backup`` back in place of ``database``: two lines of text.

    The steps act on the real file: when ``database`` is a symbolic link, SQLite keeps its
    ``-wal``, ``-shm`` and ``-journal`` beside the file the link points to (``unixFullPathname``
    resolves links), so that is where leftovers must go. Paths are absolute, so the command
    works from any folder.
    """
    real = database.resolve()
    db = str(real)
    link = f" (a link to {db})" if database.is_symlink() else ""
    leftovers = [shlex.quote(f"{db}-{suffix}") for suffix in ("wal", "shm", "journal")]
    # The old -wal (or a hot -journal) must go before the copy lands: SQLite would replay it
    # onto the restored file and corrupt it, and if removing fails the database is untouched.
    return (
        f"Stop every zos process using {database}{link}, then run:\n"
        f"rm -f {' '.join(leftovers)} && "
        f"cp {shlex.quote(str(backup.path.resolve()))} {shlex.quote(db)}"
    )


def server_backup_command(url: URL) -> str:
    """The one-line dump command for a PostgreSQL or MariaDB/MySQL URL, without its password.

    Raises:
        BackupError: a MariaDB/MySQL URL names no database (PostgreSQL has a default one:
            pg_dump, like zos, then connects to the database named after the user).
        ValueError: the URL is not a server's (SQLite is backed up with a copy).
    """
    backend = url.get_backend_name()
    if backend not in ("postgresql", "mysql", "mariadb"):
        raise ValueError(f"no server dump command for {backend} URLs; back up SQLite with a copy")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    # A password in the URL means the server asks for one: the tool prompts, nothing is echoed.
    if backend == "postgresql":
        name = url.database or url.username or "postgres"
        args = ["pg_dump", "--format=custom", f"--file=zos-{name}-{stamp}.dump"]
        args += _option("--host", url.host) + _option("--port", url.port)
        args += _option("--username", url.username)
        args += ["--password"] if url.password is not None else []
        return shlex.join(args + _option("--dbname", url.database or None))
    if not url.database:
        raise BackupError(
            "cannot say how to dump this MariaDB/MySQL server: the database URL names no"
            " database; end it with /DATABASE, as in mysql+pymysql://zos@localhost/zos"
        )
    args = ["mariadb-dump", "--single-transaction", "--routines", "--default-character-set=utf8mb4"]
    args += _option("--host", url.host) + _option("--port", url.port)
    args += _option("--user", url.username)
    args += ["--password"] if url.password is not None else []
    return f"{shlex.join([*args, url.database])} > {shlex.quote(f'zos-{url.database}-{stamp}.sql')}"


def _copy(database: Path, target: Path) -> None:
    try:
        copy_database(database, target)
    except sqlite3.Error as error:
        raise BackupError(f"cannot back up {database} into {target.parent}: {error}") from error


def _temporary_file(folder: Path, prefix: str) -> Path:
    handle, name = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=_PARTIAL)
    os.close(handle)
    return Path(name)


def _publish(
    partial: Path, folder: Path, database: Path, version: int, created_at: datetime
) -> Backup:
    try:
        _fsync(partial)
        while True:
            path = folder / f"{database.stem}-v{version:03d}-{created_at.strftime(_TIMESTAMP)}Z.db"
            try:
                # link() fails on an existing name where rename() would silently replace it.
                os.link(partial, path)
                break
            except FileExistsError:
                created_at += timedelta(microseconds=1)
        _fsync(folder)
    except OSError as error:
        raise BackupError(f"cannot back up {database} into {folder}: {_cause(error)}") from error
    return Backup(path, version, created_at)


def _prune(database: Path, kept: Backup, keep: int) -> None:
    # Names, not paths: the same file can be spelt relative or absolute.
    older = [b for b in list_backups(database) if b.path.name != kept.path.name]
    for backup in older[keep - 1 :]:
        try:
            backup.path.unlink(missing_ok=True)
        except OSError as error:
            raise BackupError(
                f"backup {kept.path} was written, but old backup {backup.path} cannot be "
                f"removed: {_cause(error)}"
            ) from error


def _fsync(path: Path) -> None:
    if os.name == "nt" and path.is_dir():
        return  # Windows cannot open a directory to flush it; NTFS journals the rename itself
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _utc(now: datetime | None) -> datetime:
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None:
        return now
    return now.astimezone(UTC).replace(tzinfo=None)


def _option(flag: str, value: str | int | None) -> list[str]:
    return [] if value is None else [f"{flag}={value}"]


def _cause(error: OSError) -> str:
    return error.strerror or str(error)
