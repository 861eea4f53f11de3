"""Issue 12 break: how ``zos db verify`` runs, apart from what it compares: the atomicity notes
count zos's own statements, Ctrl-C does not stop it, a project's ``_verify.py`` hook (or a
column SQLAlchemy cannot compile) ends in a traceback, and the generator writes into columns the
database fills itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import MetaData

from tests.conftest import Backend, MakeMigrations, migration, run_zos
from tests.integration.test_break12_values_kept import BOOKS_001, data_problems
from tests.integration.test_verify import run_verify


def one_ddl(version: int, statement: str, extra: str = "") -> str:
    source = migration(version, f"Version {version}", f'conn.execute(text("{statement}"))')
    return source.replace(f"DESCRIPTION = 'Version {version}'", f"DESCRIPTION = 'V'\n{extra}")


def test_a_migration_with_one_ddl_statement_is_not_reported_as_non_atomic_on_mariadb(
    mariadb_backend: Backend, make_migrations: MakeMigrations
) -> None:
    # zos's own run-lock holder table (_schema_lock: CREATE, then DROP) is counted as the
    # migration's: "mariadb commits each of its 3 DDL statements on its own" for one ALTER.
    folder = make_migrations(
        {
            "001_books.py": BOOKS_001,
            "002_extra.py": one_ddl(2, "ALTER TABLE books ADD COLUMN extra INTEGER"),
        }
    )
    report = run_verify(mariadb_backend, folder, MetaData())
    notes = [n for c in report.checks if c.backend == "mariadb" for n in c.notes]
    assert notes == [], notes


def test_the_non_atomic_note_counts_only_the_migrations_own_ddl_statements(
    server_backend: Backend, make_migrations: MakeMigrations
) -> None:
    # PostgreSQL counts its `CREATE SCHEMA IF NOT EXISTS "public"`, MariaDB its _schema_lock.
    two = migration(
        2,
        "Two columns",
        'conn.execute(text("ALTER TABLE books ADD COLUMN a INTEGER"))\n'
        'conn.execute(text("ALTER TABLE books ADD COLUMN b INTEGER"))',
    ).replace("DESCRIPTION = 'Two columns'", "DESCRIPTION = 'Two columns'\nTRANSACTIONAL = False")
    folder = make_migrations({"001_books.py": BOOKS_001, "002_two.py": two})
    report = run_verify(server_backend, folder, MetaData())
    notes = [n for c in report.checks if c.version == 2 for n in c.notes]
    assert len(notes) == 1 and notes[0].endswith(
        f"({server_backend.name} commits each of its 2 DDL statements on its own)"
    ), notes


SLOW_HOOK = """
import os
import time
from pathlib import Path


def slow(version, row):
    marker = Path(os.environ["B12_MARKER"])
    if not marker.exists():
        marker.write_text("running")
        time.sleep(30)
    return row


FACTORIES = {"books": slow}
"""

SLOW_002 = """
import os
import time
from pathlib import Path

VERSION = 2
DESCRIPTION = "Slow"


def upgrade(conn):
    marker = Path(os.environ["B12_MARKER"])
    if not marker.exists():
        marker.write_text("running")
        time.sleep(30)
"""


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("during", ["migration", "factory"])
def test_a_signal_during_a_migration_stops_verify_with_its_exit_code_and_leaves_nothing(
    signal_number: signal.Signals, during: str, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    # Today the runner inside verify turns the signal into one failed check and verify goes
    # on with every other check, exiting 1: Ctrl-C cannot stop it. Outside a migration (in a
    # slow row factory) it must stop verify the same way.
    if during == "migration":
        files = {"001_books.py": BOOKS_001, "002_slow.py": SLOW_002}
    else:
        files = {"001_books.py": BOOKS_001, "002_noop.py": migration(2, "Nothing")}
        files["_verify.py"] = SLOW_HOOK
    folder = make_migrations(files)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    marker = tmp_path / "marker"
    env = {
        **os.environ,
        "TMPDIR": str(scratch),
        "B12_MARKER": str(marker),
        "ZOS_DATA_DIR": str(tmp_path / "data"),
        "ZOS_MIGRATIONS_DIR": str(folder),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "zos", "db", "verify"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(600):  # bounded: at most 60 s for verify to reach 002
            if marker.exists() or process.poll() is not None:
                break
            time.sleep(0.1)
        assert marker.exists(), "verify never ran 002"
        process.send_signal(signal_number)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 128 + signal_number, (stdout, stderr)
    assert len(stderr.splitlines()) == 1 and stderr.startswith("Error: "), stderr
    assert f"interrupted by {signal_number.name}; verify stopped" in stderr, stderr
    assert list(scratch.iterdir()) == []


BROKEN_HOOKS = {
    "raises on import": "raise RuntimeError('hook broke')\n",
    "has a syntax error": "def (:\n",
    "binds FACTORIES to a list": "FACTORIES = ['books']\n",
    "has a factory that raises": "def f(version, row):\n    raise KeyError('nope')\n\n"
    "FACTORIES = {'books': f}\n",
    "has a factory returning None": "FACTORIES = {'books': lambda version, row: None}\n",
}


@pytest.mark.parametrize("hook", list(BROKEN_HOOKS), ids=lambda h: h.replace(" ", "-"))
def test_a_broken_verify_hook_is_one_error_line_naming_it(
    hook: str, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    folder = make_migrations({"001_books.py": BOOKS_001, "_verify.py": BROKEN_HOOKS[hook]})
    env = {
        **os.environ,
        "ZOS_DATA_DIR": str(tmp_path / "data"),
        "ZOS_MIGRATIONS_DIR": str(folder),
    }
    result = run_zos("db", "verify", env=env, timeout=120)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr[-600:]
    # One line, naming the hook (and the table whose factory failed); not a check's problem.
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert str(folder / "_verify.py") in lines[0]
    if "factory" in hook:
        assert "table books" in lines[0], lines[0]


def test_a_sqlite_column_declared_without_a_type_is_filled_and_verified(
    make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    # SQLite allows `CREATE TABLE t (id INTEGER PRIMARY KEY, x)`; verify raises
    # sqlalchemy.exc.CompileError ("Can't generate DDL for NullType()") and the CLI prints a
    # traceback.
    untyped = one_ddl(1, "CREATE TABLE loose (id INTEGER NOT NULL PRIMARY KEY, x)")
    folder = make_migrations({"001_loose.py": untyped, "002_noop.py": migration(2, "Nothing")})
    env = {
        **os.environ,
        "ZOS_DATA_DIR": str(tmp_path / "data"),
        "ZOS_MIGRATIONS_DIR": str(folder),
    }
    result = run_zos("db", "verify", "--json", env=env, timeout=120)
    assert "Traceback" not in result.stderr, result.stderr[-600:]
    assert '"name": "data kept"' in result.stdout


def test_a_generated_column_is_left_to_the_database(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    # The database reports the column as computed; the generator writes a value into it and
    # the database refuses the row ("cannot INSERT into generated column").
    generated = one_ddl(
        1,
        "CREATE TABLE sizes (id INTEGER NOT NULL PRIMARY KEY, a INTEGER NOT NULL, "
        "twice INTEGER GENERATED ALWAYS AS (a * 2) STORED)",
    )
    folder = make_migrations({"001_sizes.py": generated, "002_noop.py": migration(2, "Nothing")})
    found = data_problems(run_verify(backend, folder, MetaData()), backend)
    assert found == [], found


def test_an_enum_column_is_filled_with_one_of_its_values(
    server_backend: Backend, make_migrations: MakeMigrations
) -> None:
    # The allowed values are in the reflected type (Enum.enums); the generator writes '0-mood'.
    if server_backend.name == "postgresql":
        create = migration(
            1,
            "Moods",
            "conn.execute(text(\"CREATE TYPE mood AS ENUM ('happy', 'sad')\"))\n"
            'conn.execute(text("CREATE TABLE moods (id INTEGER NOT NULL PRIMARY KEY, '
            'mood mood NOT NULL)"))',
        )
    else:
        create = one_ddl(
            1,
            "CREATE TABLE moods (id INTEGER NOT NULL PRIMARY KEY, "
            "mood ENUM('happy', 'sad') NOT NULL)",
        )
    folder = make_migrations({"001_moods.py": create, "002_noop.py": migration(2, "Nothing")})
    found = data_problems(run_verify(server_backend, folder, MetaData()), server_backend)
    assert found == [], found
