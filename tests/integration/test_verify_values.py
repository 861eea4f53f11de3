"""``zos db verify`` compares values across a change of a column's definition or name without
false failures: a lossless change passes, and data dropped with a column or a table is named
until the migration declares it."""

from __future__ import annotations

from tests.conftest import Backend, MakeMigrations, migration
from tests.integration.test_break12_values_kept import BOOKS_001, OPS, verify_history


def test_a_widening_a_nullability_change_and_a_rename_that_keep_the_values_pass(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    kept = OPS + migration(
        2,
        "Reshape books",
        'ops.alter_column(conn, "books", "note", type_=String(80))\n'
        'ops.alter_column(conn, "books", "name", nullable=True)\n'
        'ops.rename_column(conn, "books", "name", "title")',
    )
    folder = make_migrations({"001_books.py": BOOKS_001, "002_reshape.py": kept})
    assert verify_history(backend, folder) == []


def test_a_column_dropped_with_its_values_is_named_unless_declared(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    drop = OPS + migration(2, "Drop notes", 'ops.drop_column(conn, "books", "note")')
    folder = make_migrations({"001_books.py": BOOKS_001, "002_drop_note.py": drop})
    found = verify_history(backend, folder)
    assert any(
        p.startswith("002_drop_note.py: table books, column note: dropped with 2 of 3 values")
        for p in found
    ), found
    declared = drop.replace("VERSION = 2\n", "VERSION = 2\nCHANGES_DATA = {'books': ['note']}\n")
    folder = make_migrations({"001_books.py": BOOKS_001, "002_drop_note.py": declared})
    assert verify_history(backend, folder) == []


def test_a_table_renamed_with_its_rows_is_followed_and_compared(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    rename = migration(
        2,
        "Call books volumes",
        'conn.execute(text("ALTER TABLE books RENAME TO volumes"))\n'
        "conn.execute(text(\"UPDATE volumes SET name = 'x' WHERE id = 1\"))",
    )
    folder = make_migrations({"001_books.py": BOOKS_001, "002_volumes.py": rename})
    found = verify_history(backend, folder)
    assert found and all(
        p.startswith(
            "002_volumes.py: table books (renamed volumes), column name: 1 of 3 values changed"
        )
        for p in found
    ), found
