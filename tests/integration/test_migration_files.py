"""Every command reads a migration file the same way: what ``status`` accepts ``migrate``
runs, what one refuses every other refuses, and a bad history row is one line everywhere."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.conftest import Backend, MakeMigrations, migration, run_cli
from tests.integration.test_migrate import cli, tables, version_rows
from zos import migrator
from zos.errors import MigrationHistoryError, SchemaNotCurrent

ANNOTATED = (
    "from sqlalchemy import Connection, text\n\n"
    "VERSION: int = {n}\n"
    'DESCRIPTION: str = "Create table {n}"\n\n\n'
    "def upgrade(conn: Connection) -> None:\n"
    "    conn.execute(text('CREATE TABLE t{n} (id INTEGER PRIMARY KEY)'))  # a comment\n"
)
UGLY = (
    "from sqlalchemy import text\n"
    "VERSION = {n}\n"
    "DESCRIPTION = 'Create table {n}'\n"
    "def upgrade(conn):\n"
    "    conn.execute(text('CREATE TABLE t{n} (id INTEGER PRIMARY KEY)'),)\n"
)


def guard(backend: Backend, folder: Path) -> str:
    """The start-up guard's verdict: "" when it passes, else its message and problems."""
    try:
        migrator.ensure_schema_current(backend.settings(folder))
    except SchemaNotCurrent as exc:
        return "\n".join([exc.message, *exc.details])
    return ""


def test_annotated_constants_are_valid_for_every_command(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({"001_t1.py": ANNOTATED.format(n=1)})
    code, out, err = cli(backend, "db", "status", migrations=folder)
    assert (code, err) == (0, "") and "  1: Create table 1\n" in out
    assert "1 migration(s) pending" in guard(backend, folder)
    assert cli(backend, "db", "migrate", "--dry-run", migrations=folder)[0] == 0
    assert cli(backend, "db", "migrate", migrations=folder)[0] == 0
    assert "t1" in tables(backend)
    assert guard(backend, folder) == ""
    assert cli(backend, "db", "status", migrations=folder)[0] == 0


@pytest.mark.parametrize(
    "body",
    [
        "VERSION = 1\nDESCRIPTION = 'x'.upper()\n\n\ndef upgrade(conn):\n    pass\n",
        "VERSION = 1\nDESCRIPTION = 'Two functions'\n\n\ndef upgrade(conn):\n    pass\nreturn 1\n",
        "VERSION = '1'\nDESCRIPTION = 'Text version'\n\n\ndef upgrade(conn):\n    pass\n",
    ],
    ids=["computed-description", "return-outside-function", "text-version"],
)
def test_a_file_one_command_refuses_every_command_refuses_with_the_same_line(
    backend: Backend, make_migrations: MakeMigrations, body: str
) -> None:
    folder = make_migrations({"001_bad.py": body})
    status_code, _, status_err = cli(backend, "db", "status", migrations=folder)
    problem = status_err.splitlines()[1].removeprefix("  - ")
    assert status_code == 1 and problem.startswith("001_bad.py: ")
    for args in (("db", "migrate", "--dry-run"), ("db", "migrate")):
        code, _, err = cli(backend, *args, migrations=folder)
        assert (code, err) == (1, f"Error: {problem}\n")
    code, _, err = cli(backend, "db", "check", migrations=folder)
    assert code == 1 and f"  - {problem}\n" in err
    assert problem in guard(backend, folder)
    assert version_rows(backend) == []


def test_ruff_format_on_an_applied_migration_is_no_edit_but_a_changed_literal_is(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({"001_t1.py": UGLY.format(n=1)})
    assert cli(backend, "db", "migrate", migrations=folder)[0] == 0
    path = folder / "001_t1.py"
    subprocess.run([sys.executable, "-m", "ruff", "format", "-q", str(path)], check=True)
    assert path.read_text() != UGLY.format(n=1)
    (folder / "002_t2.py").write_text(UGLY.format(n=2))
    assert cli(backend, "db", "status", migrations=folder)[0] == 0
    code, out, err = cli(backend, "db", "migrate", migrations=folder)
    assert (code, err) == (0, "") and "Migrated from version 1 to 2" in out
    assert guard(backend, folder) == ""
    assert "001_t1.py" not in cli(backend, "db", "check", migrations=folder)[2]
    path.write_text(path.read_text().replace("t1 (id", "t9 (id"))
    for args in (("db", "status"), ("db", "migrate"), ("db", "check")):
        code, _, err = cli(backend, *args, migrations=folder)
        assert code == 1 and "001_t1.py was changed after it was applied" in err
    assert "001_t1.py was changed after it was applied" in guard(backend, folder)


def test_a_byte_order_mark_added_to_an_applied_file_is_no_edit(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({"001_t1.py": ANNOTATED.format(n=1)})
    assert cli(backend, "db", "migrate", migrations=folder)[0] == 0
    path = folder / "001_t1.py"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
    assert cli(backend, "db", "status", migrations=folder)[::2] == (0, "")
    assert cli(backend, "db", "migrate", migrations=folder)[::2] == (0, "")
    assert guard(backend, folder) == ""


def test_a_record_made_before_the_canonical_checksum_stays_valid(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({"001_t1.py": ANNOTATED.format(n=1)})
    assert cli(backend, "db", "migrate", migrations=folder)[0] == 0
    legacy = hashlib.sha256((folder / "001_t1.py").read_bytes()).hexdigest()
    engine = backend.engine()
    with engine.begin() as conn:
        conn.execute(text("UPDATE _schema_version SET checksum = :c"), {"c": legacy})
    engine.dispose()
    (folder / "002_t2.py").write_text(ANNOTATED.format(n=2))
    assert cli(backend, "db", "status", migrations=folder)[::2] == (0, "")
    assert cli(backend, "db", "migrate", migrations=folder)[::2] == (0, "")
    assert guard(backend, folder) == ""
    history = json.loads(cli(backend, "db", "history", "--json", migrations=folder)[1])
    assert [entry["file"] for entry in history] == ["unchanged", "unchanged"]


def test_date_numbered_migrations_show_their_gap_as_one_range(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(
        {"001_t1.py": ANNOTATED.format(n=1), "20261129_t2.py": migration(20261129, "By date")}
    )
    code, out, err = cli(backend, "db", "status", migrations=folder)
    assert (code, err) == (0, "")
    assert "Unused version numbers: 2\u201320261128\n" in out
    document = json.loads(cli(backend, "db", "status", "--json", migrations=folder)[1])
    assert document["gaps"] == [[2, 20261128]]
    assert cli(backend, "db", "migrate", migrations=folder)[0] == 0
    assert [row[0] for row in version_rows(backend)] == [1, 20261129]


def test_a_version_above_what_the_column_holds_is_refused_before_anything_runs(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({"001_t1.py": ANNOTATED.format(n=1)})
    assert cli(backend, "db", "migrate", migrations=folder)[0] == 0
    huge = 2**64 + 1
    (folder / f"{huge}_t2.py").write_text(migration(huge, "Too big", "raise SystemExit"))
    expected = f"Error: {huge}_t2.py: version {huge} is above 2,147,483,647"
    for args in (("db", "migrate"), ("db", "migrate", "--dry-run")):
        code, _, err = cli(backend, *args, migrations=folder)
        assert code == 1 and err.startswith(expected) and err.count("\n") == 1
    assert cli(backend, "db", "status", migrations=folder)[0] == 1
    assert [row[0] for row in version_rows(backend)] == [1]


def test_migrate_writes_nothing_into_the_migrations_folder_and_helpers_import_from_it(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(
        {
            "_tables.py": "def create(conn, name):\n"
            "    conn.execute(text(f'CREATE TABLE {name} (id INTEGER PRIMARY KEY)'))\n\n\n"
            "from sqlalchemy import text  # noqa: E402\n",
            "001_t1.py": migration(1, "Helper", "from _tables import create\ncreate(conn, 'h1')"),
            "002_t2.py": "import _tables\n" + migration(2, "Helper", "_tables.create(conn, 'h2')"),
        }
    )
    before = sorted(p.name for p in folder.iterdir())
    assert cli(backend, "db", "migrate", "--dry-run", migrations=folder)[0] == 0
    assert cli(backend, "db", "migrate", migrations=folder)[::2] == (0, "")
    assert {"h1", "h2"} <= tables(backend)
    assert sorted(p.name for p in folder.iterdir()) == before


def break_history_row(backend: Backend, folder: Path, assignment: str) -> None:
    assert cli(backend, "db", "migrate", migrations=folder)[0] == 0
    engine = backend.engine()
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE _schema_version SET {assignment}"))
    engine.dispose()


def assert_every_command_names_the_row(
    backend: Backend, folder: Path, url: str, shown: str
) -> None:
    env = {**backend.env(folder), "ZOS_DATABASE_URL": url}
    for args in (("status",), ("history",), ("check",), ("migrate",), ("migrate", "--dry-run")):
        result = run_cli("db", *args, env=env)
        assert result.exit_code == 1, (args, result.stderr)
        assert result.stderr.startswith("Error: _schema_version row for version 1 has ")
        assert shown in result.stderr and result.stderr.count("\n") == 1, result.stderr
    with pytest.raises(MigrationHistoryError, match="row for version 1 has"):
        migrator.ensure_schema_current(backend.settings(folder, url=url))


def test_an_unknown_state_in_the_history_is_one_line_naming_it_in_every_command(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({"001_t1.py": ANNOTATED.format(n=1)})
    break_history_row(backend, folder, "state = 'exploded'")
    assert_every_command_names_the_row(backend, folder, backend.url, "state 'exploded'")


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize("reader", ["stdlib", "sqlalchemy"])
def test_a_bad_timestamp_in_the_history_is_one_line_naming_it_in_every_command(
    backend: Backend, make_migrations: MakeMigrations, reader: str
) -> None:
    """Only SQLite's column can hold text; both of its readers must name the row."""
    folder = make_migrations({"001_t1.py": ANNOTATED.format(n=1)})
    break_history_row(backend, folder, "applied_at = 'yesterday'")
    url = backend.url if reader == "stdlib" else backend.url + "?timeout=5"
    assert_every_command_names_the_row(backend, folder, url, "applied_at 'yesterday'")


def test_a_legacy_record_is_brought_up_to_date_so_a_later_reformat_is_no_edit(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({"001_t1.py": ANNOTATED.format(n=1)})
    assert cli(backend, "db", "migrate", migrations=folder)[0] == 0
    path = folder / "001_t1.py"
    legacy = hashlib.sha256(path.read_bytes()).hexdigest()
    engine = backend.engine()
    with engine.begin() as conn:
        conn.execute(text("UPDATE _schema_version SET checksum = :c"), {"c": legacy})
    engine.dispose()
    assert cli(backend, "db", "migrate", migrations=folder)[::2] == (0, "")
    # Only the form changes: comments and blank lines, which the old byte checksum counted.
    path.write_text("# reformatted\n\n" + path.read_text() + "\n\n# end\n")
    assert cli(backend, "db", "status", migrations=folder)[::2] == (0, "")
    assert cli(backend, "db", "migrate", migrations=folder)[::2] == (0, "")
