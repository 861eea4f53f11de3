"""Issue 12 break: migrations that lose data while ``zos db verify`` reports every check passed.

verify compares a column's values only while the column's definition (type, nullability) stays
the same and its name stays the same, never generates a value for a reference to the same table,
and treats a dropped table as intended: each test below plants a migration that loses every
value (or row) it could see, and today verify passes it."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import MetaData

from tests.conftest import Backend, MakeMigrations, migration
from tests.integration.test_verify import run_verify
from zos.migrator.verify import VerifyReport

BOOKS_001 = migration(
    1,
    "Create books",
    'conn.execute(text("CREATE TABLE books (id INTEGER NOT NULL PRIMARY KEY, '
    'name VARCHAR(40) NOT NULL, note VARCHAR(40))"))',
)
TOPICS_001 = migration(
    1,
    "Create topics",
    'conn.execute(text("CREATE TABLE topics (id INTEGER NOT NULL PRIMARY KEY, '
    'parent_id INTEGER REFERENCES topics (id), name VARCHAR(40) NOT NULL)"))',
)
OPS = "from sqlalchemy import String\nfrom zos.migrator import ops\n"


def data_problems(report: VerifyReport, backend: Backend) -> list[str]:
    """What verify found on ``backend``, less the comparison with a project's metadata (these
    histories are not zos's own schema)."""
    return [
        p
        for c in report.checks
        if c.backend == backend.name and c.name != "step-by-step equals all at once"
        for p in c.problems
    ]


def verify_history(backend: Backend, folder: Path) -> list[str]:
    return data_problems(run_verify(backend, folder, MetaData()), backend)


def test_values_blanked_by_the_migration_that_makes_their_column_not_null_are_named(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    blank = OPS + migration(
        2,
        "Require a note",
        "conn.execute(text(\"UPDATE books SET note = ''\"))\n"
        'ops.alter_column(conn, "books", "note", nullable=False)',
    )
    folder = make_migrations({"001_books.py": BOOKS_001, "002_require_note.py": blank})
    found = verify_history(backend, folder)
    assert any(
        p.startswith("002_require_note.py: table books, column note: 3 of 3 values changed")
        for p in found
    ), found


def test_values_overwritten_by_the_migration_that_widens_their_column_are_named(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    widen = OPS + migration(
        2,
        "Longer notes",
        "conn.execute(text(\"UPDATE books SET note = 'lost'\"))\n"
        'ops.alter_column(conn, "books", "note", type_=String(80))',
    )
    folder = make_migrations({"001_books.py": BOOKS_001, "002_longer_notes.py": widen})
    found = verify_history(backend, folder)
    assert any(
        p.startswith("002_longer_notes.py: table books, column note: 3 of 3 values changed")
        for p in found
    ), found


def test_a_type_narrowing_that_truncates_values_is_named(
    server_backend: Backend, make_migrations: MakeMigrations
) -> None:
    # PostgreSQL truncates when told how (USING left(…)); MariaDB when the ALTER is IGNORE.
    statement = (
        "ALTER TABLE books ALTER COLUMN name TYPE VARCHAR(2) USING left(name, 2)"
        if server_backend.name == "postgresql"
        else "ALTER IGNORE TABLE books MODIFY name VARCHAR(2) NOT NULL"
    )
    narrow = migration(2, "Short names", f'conn.execute(text("{statement}"))')
    folder = make_migrations({"001_books.py": BOOKS_001, "002_short_names.py": narrow})
    found = verify_history(server_backend, folder)
    assert any(
        p.startswith("002_short_names.py: table books, column name: 3 of 3 values changed")
        for p in found
    ), found


def test_values_blanked_after_a_rename_are_named(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    rename = OPS + migration(
        2,
        "Call notes remarks",
        'ops.rename_column(conn, "books", "note", "remark")\n'
        'conn.execute(text("UPDATE books SET remark = NULL"))',
    )
    folder = make_migrations({"001_books.py": BOOKS_001, "002_remarks.py": rename})
    found = verify_history(backend, folder)
    assert any(p.startswith("002_remarks.py: table books, column") for p in found), found


def test_a_reference_to_the_same_table_blanked_by_a_migration_is_named(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    # The generator leaves every self-reference NULL, so nothing a migration does to one shows.
    orphan = migration(
        2, "Flatten topics", 'conn.execute(text("UPDATE topics SET parent_id = NULL"))'
    )
    folder = make_migrations({"001_topics.py": TOPICS_001, "002_flatten.py": orphan})
    found = verify_history(backend, folder)
    assert any(p.startswith("002_flatten.py: table topics, column parent_id: ") for p in found), (
        found
    )


def test_dropping_a_table_that_holds_rows_is_named_unless_declared(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    drop = migration(2, "Drop books", 'conn.execute(text("DROP TABLE books"))')
    folder = make_migrations({"001_books.py": BOOKS_001, "002_drop_books.py": drop})
    found = verify_history(backend, folder)
    assert any(p.startswith("002_drop_books.py: table books: ") for p in found), found
    declared = drop.replace(
        "DESCRIPTION = 'Drop books'", "DESCRIPTION = 'Drop books'\nCHANGES_DATA = {'books': ['*']}"
    )
    folder = make_migrations({"001_books.py": BOOKS_001, "002_drop_books.py": declared})
    assert verify_history(backend, folder) == []
