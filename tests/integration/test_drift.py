"""Schema drift: a database migrated with the real migrations, then changed by hand with plain SQL,
is described exactly by ``find_drift`` on every backend."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, Engine

from tests.conftest import Backend
from zos import migrator
from zos.database import metadata
from zos.migrator.drift import find_drift

# draft_history as 001 creates it on SQLite; a leaf table, so a rebuild touches nothing else.
SQLITE_DRAFT_HISTORY = {
    "id": "VARCHAR(26) NOT NULL",
    "channel_id": "VARCHAR(32) NOT NULL",
    "thread_id": "VARCHAR(32)",
    "content": "TEXT NOT NULL",
    "layer_name": "VARCHAR(255) NOT NULL",
    "discard_reason": "VARCHAR(255)",
    "created_at": "DATETIME NOT NULL",
}
TIMESTAMP = {"sqlite": "DATETIME", "postgresql": "TIMESTAMP", "mariadb": "DATETIME(6)"}
FK_NAME = "fk_draft_history_channel_id_channels"


@pytest.fixture
def engine(backend: Backend) -> Iterator[Engine]:
    """The backend's empty database, taken to head by the real migrations."""
    migrator.migrate(backend.settings())
    engine = backend.engine()
    yield engine
    engine.dispose()


def run(engine: Engine, *statements: str) -> None:
    with engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)


def drift(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return find_drift(conn, metadata)


def rebuild_sqlite_draft_history(
    conn: Connection, columns: dict[str, str], extra: str = ""
) -> None:
    """SQLite has no ALTER COLUMN: its documented recipe is create, copy, drop, rename, re-index."""
    definitions = [f"{name} {definition}" for name, definition in columns.items()]
    definitions.append("CONSTRAINT pk_draft_history PRIMARY KEY (id)")
    if extra:
        definitions.append(extra)
    names = ", ".join(columns)
    for statement in (
        f"CREATE TABLE new_draft_history ({', '.join(definitions)})",
        f"INSERT INTO new_draft_history ({names}) SELECT {names} FROM draft_history",
        "DROP TABLE draft_history",
        "ALTER TABLE new_draft_history RENAME TO draft_history",
        "CREATE INDEX ix_draft_history_channel_thread_created"
        " ON draft_history (channel_id, thread_id, created_at)",
    ):
        conn.exec_driver_sql(statement)


def redefine_draft_history(
    engine: Engine, backend: str, changes: dict[str, tuple[str, bool]]
) -> None:
    """Give draft_history columns a new SQL type and nullability by hand, as an operator would."""
    if backend == "postgresql":
        clauses = [
            f"ALTER COLUMN {name} TYPE {type_} USING {name}::{type_}, "
            f"ALTER COLUMN {name} {'DROP' if nullable else 'SET'} NOT NULL"
            for name, (type_, nullable) in changes.items()
        ]
        run(engine, f"ALTER TABLE draft_history {', '.join(clauses)}")
    elif backend == "mariadb":
        clauses = [
            f"MODIFY {name} {type_} {'NULL' if nullable else 'NOT NULL'}"
            for name, (type_, nullable) in changes.items()
        ]
        run(engine, f"ALTER TABLE draft_history {', '.join(clauses)}")
    else:
        columns = dict(SQLITE_DRAFT_HISTORY)
        for name, (type_, nullable) in changes.items():
            columns[name] = type_ if nullable else f"{type_} NOT NULL"
        with engine.begin() as conn:
            rebuild_sqlite_draft_history(conn, columns)


def test_a_freshly_migrated_database_has_no_drift(engine: Engine) -> None:
    """Every harmless way a dialect reflects the schema's types must be recognised as such."""
    assert drift(engine) == []


def test_a_column_added_by_hand_is_named(backend: Backend, engine: Engine) -> None:
    run(engine, f"ALTER TABLE messages ADD COLUMN edited_at {TIMESTAMP[backend.name]} NULL")
    assert drift(engine) == [
        "table messages: column edited_at is in the database but not in the schema"
    ]


def test_a_table_dropped_by_hand_is_named_once(engine: Engine) -> None:
    """Its index goes with it, and is not reported a second time."""
    run(engine, "DROP TABLE draft_history")
    assert drift(engine) == ["table draft_history is missing from the database"]


def test_a_table_created_by_hand_is_named(engine: Engine) -> None:
    run(engine, "CREATE TABLE scratch (id INTEGER PRIMARY KEY, note VARCHAR(20))")
    assert drift(engine) == ["table scratch is in the database but not in the schema"]


def test_a_table_whose_name_starts_with_an_underscore_is_ignored(engine: Engine) -> None:
    run(engine, "CREATE TABLE _scratch (id INTEGER PRIMARY KEY, note VARCHAR(20))")
    assert drift(engine) == []


def test_an_index_dropped_by_hand_is_named(backend: Backend, engine: Engine) -> None:
    on_table = " ON messages" if backend.name == "mariadb" else ""
    run(engine, f"DROP INDEX ix_messages_author_created{on_table}")
    assert drift(engine) == [
        "table messages: index ix_messages_author_created is missing from the database"
    ]


def test_an_index_created_by_hand_is_named(engine: Engine) -> None:
    run(engine, "CREATE INDEX ix_extra ON messages (thread_id)")
    assert drift(engine) == [
        "table messages: index ix_extra is in the database but not in the schema"
    ]


def test_columns_whose_nullability_changed_by_hand_are_named(
    backend: Backend, engine: Engine
) -> None:
    changes = {"layer_name": ("VARCHAR(255)", True), "thread_id": ("VARCHAR(32)", False)}
    redefine_draft_history(engine, backend.name, changes)
    assert drift(engine) == [
        "table draft_history: column layer_name is nullable in the database"
        " but NOT NULL in the schema",
        "table draft_history: column thread_id is NOT NULL in the database"
        " but nullable in the schema",
    ]


def test_columns_whose_type_changed_by_hand_are_named(backend: Backend, engine: Engine) -> None:
    changes = {"channel_id": ("VARCHAR(64)", False), "discard_reason": ("INTEGER", True)}
    redefine_draft_history(engine, backend.name, changes)
    assert drift(engine) == [
        "table draft_history: column channel_id has type VARCHAR(64) in the database"
        " but VARCHAR(32) in the schema",
        "table draft_history: column discard_reason has type INTEGER in the database"
        " but VARCHAR(255) in the schema",
    ]


def test_a_foreign_key_added_by_hand_is_named(backend: Backend, engine: Engine) -> None:
    clause = f"CONSTRAINT {FK_NAME} FOREIGN KEY (channel_id) REFERENCES channels (id)"
    if backend.name == "sqlite":
        with engine.begin() as conn:
            rebuild_sqlite_draft_history(conn, SQLITE_DRAFT_HISTORY, extra=clause)
    else:
        run(engine, f"ALTER TABLE draft_history ADD {clause}")
    assert drift(engine) == [
        f"table draft_history: foreign key {FK_NAME} (channel_id) -> channels (id)"
        " is in the database but not in the schema"
    ]
