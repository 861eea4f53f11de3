"""Writes what both tools run: zos migration folders, Alembic projects, and SQLite files.

Every migration is written twice, once per tool, with the same SQL or the same SQLAlchemy code,
so that the two sides do the same work and differ only in the tool around it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sqlite3
import sys
from pathlib import Path

from harness import check_call

BIN = Path(sys.executable).parent
ZOS = [str(BIN / "zos")]
ALEMBIC = [str(BIN / "alembic")]
YOYO = [str(BIN / "yoyo")]
SQLITE_SHELL = "/usr/bin/sqlite3"

# The Alembic database is always ./db.sqlite of the directory a command runs in.
ALEMBIC_URL = "sqlite:///db.sqlite"
DB_NAME = "db.sqlite"


def version_1_file() -> Path:
    """The real, frozen ``001_initial.py`` of the installed zos (found without importing zos)."""
    spec = importlib.util.find_spec("zos")
    if spec is None or spec.origin is None:
        raise RuntimeError("zos is not installed in this Python; run with .venv/bin/python")
    return Path(spec.origin).parent / "migrations" / "001_initial.py"


# --- zos -------------------------------------------------------------------------------------


def zos_folder(directory: Path, files: dict[str, str], *, with_version_1: bool = False) -> Path:
    """A migrations folder holding ``files`` (name: source), and ``001_initial.py`` if asked."""
    directory.mkdir(parents=True)
    if with_version_1:
        shutil.copyfile(version_1_file(), directory / "001_initial.py")
    for name, source in files.items():
        (directory / name).write_text(source, encoding="utf-8")
    return directory


def zos_small_tables(count: int) -> dict[str, str]:
    """``count`` zos migrations, number n creating table tNNNN; file names have 3+ digits."""
    return {
        f"{n:03d}_create_t{n:04d}.py": (
            f'"""Create table t{n:04d}."""\n\n'
            "from sqlalchemy import Connection, text\n\n"
            f"VERSION = {n}\n"
            f'DESCRIPTION = "Create table t{n:04d}"\n\n\n'
            "def upgrade(conn: Connection) -> None:\n"
            f'    conn.execute(text("{small_table_sql(n)}"))\n'
        )
        for n in range(1, count + 1)
    }


def zos_env(base: dict[str, str], migrations: Path, database: Path) -> dict[str, str]:
    """Environment pointing zos at one migrations folder and one SQLite file."""
    return zos_url_env(base, migrations, f"sqlite:///{database}", database.parent)


def zos_url_env(base: dict[str, str], migrations: Path, url: str, data_dir: Path) -> dict[str, str]:
    """Environment pointing zos at one migrations folder and the database at ``url``."""
    return {
        **base,
        "ZOS_MIGRATIONS_DIR": str(migrations),
        "ZOS_DATABASE_URL": url,
        "ZOS_DATA_DIR": str(data_dir),
    }


# --- Alembic ---------------------------------------------------------------------------------


def alembic_project(
    directory: Path, revisions: dict[str, str], env: dict[str, str], url: str = ALEMBIC_URL
) -> Path:
    """An Alembic project made by ``alembic init --template generic``, as a new user makes one.

    Only ``sqlalchemy.url`` is changed, by default to ``./db.sqlite``; env.py and the logging
    set-up stay as generated. Returns the path of its ``alembic.ini``.
    """
    directory.mkdir(parents=True)
    check_call([*ALEMBIC, "init", "--template", "generic", "migrations"], directory, env)
    ini = directory / "alembic.ini"
    lines = ini.read_text(encoding="utf-8").splitlines()
    replaced = [
        f"sqlalchemy.url = {url}" if line.startswith("sqlalchemy.url") else line for line in lines
    ]
    if replaced == lines:
        raise RuntimeError(f"no sqlalchemy.url line in {ini}")
    ini.write_text("\n".join(replaced) + "\n", encoding="utf-8")
    for name, source in revisions.items():
        (directory / "migrations" / "versions" / name).write_text(source, encoding="utf-8")
    return ini


def alembic_version_1() -> dict[str, str]:
    """Revision ``v0001``: the text of zos's frozen ``001_initial.py``, called from Alembic.

    Both tools therefore build the 18 tables with the very same SQLAlchemy code.
    """
    frozen = version_1_file().read_text(encoding="utf-8")
    source = (
        frozen
        + "\n\n# Alembic's side of the benchmark: the frozen zos code above, run by Alembic.\n"
        "from alembic import op  # noqa: E402\n\n"
        'revision = "v0001"\n'
        "down_revision = None\n"
        "branch_labels = None\n"
        "depends_on = None\n\n"
        "_create_version_1 = upgrade\n\n\n"
        "def upgrade() -> None:  # noqa: F811\n"
        "    _create_version_1(op.get_bind())\n\n\n"
        "def downgrade() -> None:\n"
        '    raise NotImplementedError("forward only, like zos")\n'
    )
    return {"v0001_version_1.py": source}


def alembic_next(revision: str, down: str, body: str, imports: str = "") -> dict[str, str]:
    """One revision after ``down`` whose ``upgrade()`` is ``body`` (already indented)."""
    source = (
        f'"""Benchmark revision {revision}."""\n\n'
        f"{imports}from alembic import op\n\n"
        f'revision = "{revision}"\n'
        f'down_revision = "{down}"\n'
        "branch_labels = None\n"
        "depends_on = None\n\n\n"
        "def upgrade() -> None:\n"
        f"{body}\n\n\n"
        "def downgrade() -> None:\n"
        '    raise NotImplementedError("forward only, like zos")\n'
    )
    return {f"{revision}_benchmark.py": source}


def alembic_small_tables(count: int) -> dict[str, str]:
    """``count`` revisions chained by ``down_revision``, number n creating table tNNNN."""
    revisions = {}
    for n in range(1, count + 1):
        down = f'"r{n - 1:04d}"' if n > 1 else "None"
        revisions[f"r{n:04d}_create_t{n:04d}.py"] = (
            f'"""Create table t{n:04d}."""\n\n'
            "from alembic import op\n\n"
            f'revision = "r{n:04d}"\n'
            f"down_revision = {down}\n"
            "branch_labels = None\n"
            "depends_on = None\n\n\n"
            "def upgrade() -> None:\n"
            f'    op.execute("{small_table_sql(n)}")\n\n\n'
            "def downgrade() -> None:\n"
            f'    op.execute("DROP TABLE t{n:04d}")\n'
        )
    return revisions


def alembic_argv(ini: Path, *command: str) -> list[str]:
    return [*ALEMBIC, "-c", str(ini), *command]


def alembic_ini_for(ini: Path, url: str, target: Path) -> Path:
    """A copy of the project's ``ini`` at ``target`` that points at the database ``url``.

    The copy names the project's scripts by absolute path, so one project serves many databases.
    """
    scripts = ini.parent / "migrations"
    lines = []
    for line in ini.read_text(encoding="utf-8").splitlines():
        if line.startswith("sqlalchemy.url"):
            line = f"sqlalchemy.url = {url}"
        elif line.startswith("script_location"):
            line = f"script_location = {scripts}"
        lines.append(line)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target


# --- yoyo ------------------------------------------------------------------------------------


def yoyo_folder(directory: Path, files: dict[str, str]) -> Path:
    """A yoyo migrations folder of SQL files (name: SQL text)."""
    directory.mkdir(parents=True)
    for name, sql in files.items():
        (directory / name).write_text(sql, encoding="utf-8")
    return directory


def yoyo_argv(command: str, url: str, folder: Path) -> list[str]:
    """``yoyo <command>`` without prompts or a yoyo.ini, on the database at ``url``."""
    return [*YOYO, command, "--batch", "--no-config-file", "--database", url, str(folder)]


def yoyo_version_1(dialect: str) -> dict[str, str]:
    """The version-1 schema as one SQL file, the DDL the frozen ``001_initial.py`` sends.

    A yoyo user writes SQL: the statements are SQLAlchemy's own compilation of the frozen file's
    tables for ``dialect`` ("sqlite" or "postgresql"), so both tools build the same schema.
    """
    import runpy

    from sqlalchemy.dialects import postgresql, sqlite
    from sqlalchemy.schema import CreateIndex, CreateTable

    compiler = {"sqlite": sqlite.dialect(), "postgresql": postgresql.dialect()}[dialect]
    frozen = runpy.run_path(str(version_1_file()))
    statements = []
    for table in frozen["_metadata"].tables.values():
        statements.append(str(CreateTable(table).compile(dialect=compiler)).strip())
        statements += [
            str(CreateIndex(index).compile(dialect=compiler)).strip()
            for index in sorted(table.indexes, key=lambda index: str(index.name))
        ]
    return {"0001_version_1.sql": ";\n\n".join(statements) + ";\n"}


# --- SQLite files ----------------------------------------------------------------------------


def small_table_sql(n: int) -> str:
    return f"CREATE TABLE t{n:04d} (id INTEGER NOT NULL PRIMARY KEY, label VARCHAR(50))"


def empty_wal_database(path: Path) -> Path:
    """An SQLite file with no tables, already in WAL mode (which the file remembers)."""
    conn = sqlite3.connect(path)
    try:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise RuntimeError(f"{path} would not switch to WAL (got {mode})")
    finally:
        conn.close()
    return path


def fresh_copy(template: Path, target: Path) -> None:
    """Replace ``target`` (and any -wal/-shm of it) with a copy of ``template``, on disk.

    Flushed before the clock starts: otherwise the timed process's first fsync (SQLite's
    checkpoint at close) would write out the whole copy, hundreds of MiB for the big table.
    """
    remove_database(target)
    shutil.copyfile(template, target)
    with target.open("rb+") as copy:
        os.fsync(copy.fileno())


def remove_database(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
