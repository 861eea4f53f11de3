"""``zos db verify`` proves migrations on populated scratch databases: the real history passes on
every backend, and each planted mistake fails naming the migration, the table and a sample row."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData

from tests.conftest import SERVER_URLS, Backend, MakeMigrations, run_cli
from zos.config import Settings
from zos.migrator.verify import Check, VerifyReport, verify

# A small history: 001 creates two tables (its own frozen definitions, as a migration must).
NOTES_001 = """
from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table

VERSION = 1
DESCRIPTION = "Create notes"

_m = MetaData()
Table(
    "books",
    _m,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("name", String(40), nullable=False),
)
Table(
    "notes",
    _m,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("book_id", Integer, ForeignKey("books.id"), nullable=False),
    Column("title", String(40), nullable=False),
    Column("body", String(40), nullable=False),
    Column("hidden", Integer, nullable=True),
)


def upgrade(conn):
    _m.create_all(conn)
"""


def head_metadata() -> MetaData:
    """What the history above builds, as a project's schema module would declare it."""
    namespace: dict[str, Any] = {}
    exec(compile(NOTES_001, "001_notes.py", "exec"), namespace)
    metadata = namespace["_m"]
    assert isinstance(metadata, MetaData)
    return metadata


def second(body: str, extra: str = "") -> str:
    indented = "\n".join("    " + line for line in body.strip().splitlines())
    return (
        "from sqlalchemy import text\n\n"
        f"VERSION = 2\nDESCRIPTION = 'Second'\n{extra}\n\n"
        f"def upgrade(conn):\n{indented}\n"
    )


BROAD_DELETE = second(
    # Meant: hidden notes only; the OR makes it every note.
    'conn.execute(text("DELETE FROM notes WHERE hidden IS NULL OR title IS NOT NULL"))'
)
POSITIONAL_REBUILD = second(
    """
conn.execute(text(
    "CREATE TABLE notes_new (id INTEGER NOT NULL PRIMARY KEY, book_id INTEGER NOT NULL "
    "REFERENCES books (id), body VARCHAR(40) NOT NULL, title VARCHAR(40) NOT NULL, "
    "hidden INTEGER)"
))
conn.execute(text("INSERT INTO notes_new SELECT * FROM notes"))
conn.execute(text("DROP TABLE notes"))
conn.execute(text("ALTER TABLE notes_new RENAME TO notes"))
"""
)
BLANKING_UPDATE = "conn.execute(text(\"UPDATE notes SET body = ''\"))"
IMPORTS_SCHEMA = second("pass", extra="\nfrom zos.schema import metadata  # noqa: F401\n")


def run_verify(backend: Backend, folder: Path, metadata: MetaData | None = None) -> VerifyReport:
    urls = [] if backend.name == "sqlite" else [SERVER_URLS[backend.name]]
    settings = Settings(data_dir=backend.tmp_path / "data", migrations_dir=folder)
    return verify(settings, urls, metadata=metadata, sqlite=backend.name == "sqlite")


def problems(report: VerifyReport, backend: Backend) -> list[str]:
    return [p for c in report.checks if c.backend in (backend.name, "files") for p in c.problems]


def on(report: VerifyReport, backend: Backend) -> list[Check]:
    return [c for c in report.checks if c.backend == backend.name]


def test_verify_passes_on_the_real_history(backend: Backend) -> None:
    report = run_verify(backend, Path(__file__).parents[2] / "src" / "zos" / "migrations")
    assert report.ok, problems(report, backend)
    checks = on(report, backend)
    assert {c.name for c in checks} == {"step-by-step equals all at once", "data kept", "atomic"}
    notes = [n for c in checks for n in c.notes]
    if backend.name == "mariadb":
        # 001 creates 18 tables and their indexes: MariaDB commits each statement on its own.
        assert len(notes) == 1 and notes[0].startswith("001_initial.py: not atomic")
    else:
        assert notes == []


def test_a_small_history_without_mistakes_passes(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({"001_notes.py": NOTES_001, "002_hide.py": second("pass")})
    report = run_verify(backend, folder, head_metadata())
    assert report.ok, problems(report, backend)


def test_a_delete_broader_than_meant_is_named(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({"001_notes.py": NOTES_001, "002_drop_hidden.py": BROAD_DELETE})
    report = run_verify(backend, folder, head_metadata())
    assert not report.ok
    found = [p for p in problems(report, backend) if "rows are gone" in p]
    assert found and found[0].startswith("002_drop_hidden.py: table notes: 3 of 3 rows are gone")
    assert "e.g. id=1" in found[0]


def test_a_positional_rebuild_swapping_two_columns_is_named(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({"001_notes.py": NOTES_001, "002_rebuild.py": POSITIONAL_REBUILD})
    report = run_verify(backend, folder, head_metadata())
    assert not report.ok
    found = problems(report, backend)
    assert any(
        p.startswith("002_rebuild.py: table notes, column title: 3 of 3 values changed, e.g. id=1")
        and "'0-title' -> '0-body'" in p
        for p in found
    ), found


def test_an_update_blanking_an_undeclared_column_is_named(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({"001_notes.py": NOTES_001, "002_blank.py": second(BLANKING_UPDATE)})
    report = run_verify(backend, folder, head_metadata())
    assert not report.ok
    found = problems(report, backend)
    assert any(
        p.startswith("002_blank.py: table notes, column body: 3 of 3 values changed, e.g. id=1")
        and "'0-body' -> ''" in p
        for p in found
    ), found


def test_the_same_update_declared_in_changes_data_passes(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    declared = second(BLANKING_UPDATE, extra='CHANGES_DATA = {"notes": ["body"]}')
    folder = make_migrations({"001_notes.py": NOTES_001, "002_blank.py": declared})
    report = run_verify(backend, folder, head_metadata())
    assert report.ok, problems(report, backend)


def test_a_migration_importing_zos_schema_fails_verify_and_check(
    make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    folder = make_migrations({"001_notes.py": NOTES_001, "002_reads_schema.py": IMPORTS_SCHEMA})
    settings = Settings(data_dir=tmp_path / "data", migrations_dir=folder)
    report = verify(settings, metadata=head_metadata())
    (static,) = [c for c in report.checks if c.name == "static"]
    assert static.problems == (
        "002_reads_schema.py: imports zos.schema.metadata (line 6): a migration must not read "
        "the newest schema; copy the definitions it needs into the file",
    )
    assert not report.ok
    env = {"ZOS_DATA_DIR": str(tmp_path / "data"), "ZOS_MIGRATIONS_DIR": str(folder)}
    result = run_cli("db", "check", env=env)
    assert result.exit_code == 1
    assert "  - 002_reads_schema.py: imports zos.schema.metadata (line 6)" in result.stderr


def test_the_command_prints_a_line_per_check_and_exits_1_on_a_failure(
    make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    folder = make_migrations({"001_notes.py": NOTES_001, "002_drop_hidden.py": BROAD_DELETE})
    env = {"ZOS_DATA_DIR": str(tmp_path / "data"), "ZOS_MIGRATIONS_DIR": str(folder)}
    result = run_cli("db", "verify", env=env)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["files", "static", "0.00"] or lines[0].split()[:2] == [
        "files",
        "static",
    ]
    assert any(line.split()[:4] == ["sqlite", "002", "data", "kept"] for line in lines)
    assert "      - 002_drop_hidden.py: table notes: 3 of 3 rows are gone, e.g. id=1" in lines
    assert result.stderr.endswith("check(s) failed\n")
    as_json = run_cli("db", "verify", "--json", env=env)
    assert as_json.exit_code == 1
    document = json.loads(as_json.stdout)
    assert document["ok"] is False
    failed = [c for c in document["checks"] if not c["ok"]]
    assert failed and all(c["problems"] for c in failed)


def test_verify_on_the_real_history_exits_0(tmp_path: Path) -> None:
    result = run_cli("db", "verify", env={"ZOS_DATA_DIR": str(tmp_path / "data")})
    assert result.exit_code == 0, result.stdout
    assert result.stdout.endswith("checks)\n") and "Every check passed" in result.stdout


@pytest.mark.parametrize("flag", ["--help"])
def test_verify_has_help(flag: str) -> None:
    result = run_cli("db", "verify", flag)
    assert result.exit_code == 0 and "--backend URL" in result.stdout


def test_an_unreachable_server_is_one_error_line_without_the_password(tmp_path: Path) -> None:
    url = "postgresql+psycopg://postgres:s3cret@127.0.0.1:1/test"
    result = run_cli("db", "verify", "--backend", url, env={"ZOS_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "Error: cannot connect to postgresql+psycopg://postgres:***@127.0.0.1:1/test: "
    )
    assert len(result.stderr.splitlines()) == 1
    assert "OperationalError" not in result.stderr  # the driver's message, not SQLAlchemy's
    assert "s3cret" not in result.stdout + result.stderr


CHECKED_001 = NOTES_001.replace(
    'Column("title", String(40), nullable=False),',
    'Column("title", String(40), nullable=False),\n'
    '    CheckConstraint("title LIKE \'T%\' AND length(title) > 30", name="ck_title"),',
).replace("from sqlalchemy import", "from sqlalchemy import CheckConstraint,")
FACTORY = """
def note(version, row):
    return {**row, "title": "T" + row["title"].ljust(35, "x")}


FACTORIES = {"notes": note}
"""


def test_a_table_the_generator_cannot_fill_is_named_until_a_factory_fills_it(
    make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    namespace: dict[str, Any] = {}
    exec(compile(CHECKED_001, "001_notes.py", "exec"), namespace)
    settings = Settings(
        data_dir=tmp_path / "data", migrations_dir=make_migrations({"001_notes.py": CHECKED_001})
    )
    report = verify(settings, metadata=namespace["_m"])
    refused = [p for c in report.checks for p in c.problems if "refused generated row" in p]
    assert refused and refused[0].startswith("version 1: table notes: the database refused")
    assert "register a row factory for it in _verify.py" in refused[0]
    folder = make_migrations({"001_notes.py": CHECKED_001, "_verify.py": FACTORY})
    report = verify(
        Settings(data_dir=tmp_path / "data", migrations_dir=folder), metadata=namespace["_m"]
    )
    assert report.ok, [p for c in report.checks for p in c.problems]
