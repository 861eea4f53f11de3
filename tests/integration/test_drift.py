"""Schema drift: a database migrated with the real migrations, then changed by hand with plain SQL,
is described exactly by ``find_drift`` on every backend."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from sqlalchemy import (
    CheckConstraint,
    Column,
    Connection,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    func,
    text,
)

from tests.conftest import REAL_MIGRATIONS, Backend, MakeMigrations, run_zos
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
    run(engine, f"ALTER TABLE messages ADD COLUMN scratch_at {TIMESTAMP[backend.name]} NULL")
    assert drift(engine) == [
        "table messages: column scratch_at is in the database but not in the schema"
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


def rebuild_sqlite_table(engine: Engine, table: str, edits: dict[str, str]) -> None:
    """Rebuild an SQLite table from its stored SQL with each key of ``edits`` replaced by its
    value, following
    SQLite's documented recipe (foreign keys off; create, copy, drop, rename, re-index)."""
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA foreign_keys = OFF")
        conn.commit()
        with conn.begin():
            sql, *indexes = conn.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL"
                " ORDER BY type = 'index'",
                (table,),
            ).scalars()
            for old, new in edits.items():
                assert old in sql
                sql = sql.replace(old, new)
            # After a rename SQLite stores the name quoted.
            edited = re.sub(rf'^CREATE TABLE "?{table}"?', "CREATE TABLE rebuilt", sql)
            conn.exec_driver_sql(edited)
            conn.exec_driver_sql(f"INSERT INTO rebuilt SELECT * FROM {table}")
            conn.exec_driver_sql(f"DROP TABLE {table}")
            conn.exec_driver_sql(f"ALTER TABLE rebuilt RENAME TO {table}")
            for index in indexes:
                conn.exec_driver_sql(index)
        conn.exec_driver_sql("PRAGMA foreign_keys = ON")
        conn.commit()


CHECK = "ck_insights_valence_required"
VALENCE = (
    "valence_joy IS NOT NULL OR valence_concern IS NOT NULL OR valence_curiosity IS NOT NULL"
    " OR valence_warmth IS NOT NULL OR valence_tension IS NOT NULL"
)


def test_a_check_constraint_dropped_by_hand_is_named(backend: Backend, engine: Engine) -> None:
    if backend.name == "sqlite":
        rebuild_sqlite_table(engine, "insights", {f"CONSTRAINT {CHECK} CHECK ({VALENCE}), ": ""})
    else:
        run(engine, f"ALTER TABLE insights DROP CONSTRAINT {CHECK}")
    assert drift(engine) == [
        f"table insights: check constraint {CHECK} ({VALENCE}) is missing from the database"
    ]


def test_a_check_constraint_whose_condition_changed_is_named_with_both_sides(
    backend: Backend, engine: Engine
) -> None:
    if backend.name == "sqlite":
        rebuild_sqlite_table(engine, "insights", {VALENCE: "valence_joy IS NOT NULL"})
    else:
        run(
            engine,
            f"ALTER TABLE insights DROP CONSTRAINT {CHECK}",
            f"ALTER TABLE insights ADD CONSTRAINT {CHECK} CHECK (valence_joy IS NOT NULL)",
        )
    stored = {
        "sqlite": "valence_joy IS NOT NULL",
        "postgresql": "valence_joy IS NOT NULL",
        "mariadb": "`valence_joy` is not null",
    }[backend.name]
    assert drift(engine) == [
        f"table insights: check constraint {CHECK} is ({stored}) in the database"
        f" but ({VALENCE}) in the schema"
    ]


def test_a_check_constraint_added_by_hand_is_named(backend: Backend, engine: Engine) -> None:
    clause = "CONSTRAINT ck_draft_history_short CHECK (length(content) < 2000)"
    if backend.name == "sqlite":
        with engine.begin() as conn:
            rebuild_sqlite_draft_history(conn, SQLITE_DRAFT_HISTORY, extra=clause)
    else:
        run(engine, f"ALTER TABLE draft_history ADD {clause}")
    stored = {
        "sqlite": "length(content) < 2000",
        "postgresql": "length(content) < 2000",
        "mariadb": "octet_length(`content`) < 2000",
    }[backend.name]
    assert drift(engine) == [
        f"table draft_history: check constraint ck_draft_history_short ({stored})"
        " is in the database but not in the schema"
    ]


def test_a_server_default_added_by_hand_is_named_with_both_sides(
    backend: Backend, engine: Engine
) -> None:
    if backend.name == "sqlite":
        columns = dict(SQLITE_DRAFT_HISTORY, layer_name="VARCHAR(255) NOT NULL DEFAULT 'speech'")
        with engine.begin() as conn:
            rebuild_sqlite_draft_history(conn, columns)
    else:
        run(engine, "ALTER TABLE draft_history ALTER COLUMN layer_name SET DEFAULT 'speech'")
    stored = "'speech'::character varying" if backend.name == "postgresql" else "'speech'"
    assert drift(engine) == [
        f"table draft_history: column layer_name has default {stored} in the database"
        " but none in the schema"
    ]


COLLATION = {"postgresql": ('"C"', "C"), "mariadb": ("utf8mb4_bin", "utf8mb4_bin")}


def test_a_column_collation_changed_by_hand_is_named_with_both_sides(
    server_backend: Backend, engine_on_server: Engine
) -> None:
    """SQLite is left out: SQLAlchemy does not reflect its collations."""
    declared, stored = COLLATION[server_backend.name]
    if server_backend.name == "postgresql":
        change = f"ALTER COLUMN channel_id TYPE VARCHAR(32) COLLATE {declared}"
        default = "the database's default"
    else:
        change = f"MODIFY channel_id VARCHAR(32) COLLATE {declared} NOT NULL"
        with engine_on_server.connect() as conn:
            table_collation = conn.exec_driver_sql(
                "SELECT TABLE_COLLATION FROM information_schema.TABLES"
                " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'draft_history'"
            ).scalar()
        default = f"the table's default ({table_collation})"
    run(engine_on_server, f"ALTER TABLE draft_history {change}")
    assert drift(engine_on_server) == [
        f"table draft_history: column channel_id has collation {stored} in the database"
        f" but {default} in the schema"
    ]


@pytest.fixture
def engine_on_server(server_backend: Backend) -> Iterator[Engine]:
    migrator.migrate(server_backend.settings())
    engine = server_backend.engine()
    yield engine
    engine.dispose()


REACTIONS_FK = "fk_reactions_message_id_messages"


def test_a_changed_on_delete_is_one_sentence_naming_both_actions(
    backend: Backend, engine: Engine
) -> None:
    if backend.name == "sqlite":
        rebuild_sqlite_table(
            engine,
            "reactions",
            {"REFERENCES messages (id)": "REFERENCES messages (id) ON DELETE CASCADE"},
        )
    else:
        drop = "DROP FOREIGN KEY" if backend.name == "mariadb" else "DROP CONSTRAINT"
        run(
            engine,
            f"ALTER TABLE reactions {drop} {REACTIONS_FK}",
            f"ALTER TABLE reactions ADD CONSTRAINT {REACTIONS_FK} FOREIGN KEY (message_id)"
            " REFERENCES messages (id) ON DELETE CASCADE",
        )
    assert drift(engine) == [
        f"table reactions: foreign key {REACTIONS_FK} (message_id) -> messages (id)"
        " has ON DELETE CASCADE in the database but no ON DELETE action in the schema"
    ]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)
def test_an_expression_index_made_by_hand_is_named_without_a_warning(
    backend: Backend, engine: Engine
) -> None:
    """MariaDB has no expression indexes. SQLite's reflection skips them with a warning."""
    run(engine, "CREATE INDEX ix_lower_content ON messages (lower(content))")

    result = run_zos("db", "check", env=backend.env())

    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "1 problem(s) found:",
        "  - table messages: index ix_lower_content is in the database but not in the schema",
    ]


DROP_HAS_LINKS = """from sqlalchemy import Connection

from zos.migrator import ops

VERSION = 2
DESCRIPTION = "Drop messages.has_links"


def upgrade(conn: Connection) -> None:
    ops.drop_column(conn, "messages", "has_links")
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)
def test_migrating_a_table_with_an_expression_index_prints_no_warning(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    """The table-change helpers reflect the table, which SQLite does with a warning per
    expression index; the index itself is kept."""
    folder = make_migrations(
        {
            "001_initial.py": (REAL_MIGRATIONS / "001_initial.py").read_text(),
            "002_drop_has_links.py": DROP_HAS_LINKS,
        }
    )
    migrator.migrate(backend.settings(migrations_dir=folder), target=1)
    engine = backend.engine()
    run(engine, "CREATE INDEX ix_lower_content ON messages (lower(content))")
    engine.dispose()

    rehearsed = run_zos("db", "migrate", "--dry-run", env=backend.env(folder))
    applied = run_zos("db", "migrate", "--no-backup", env=backend.env(folder))

    assert (rehearsed.returncode, rehearsed.stderr) == (0, "")
    assert (applied.returncode, applied.stderr) == (0, "")
    indexes = {
        "sqlite": "SELECT name FROM sqlite_master WHERE type = 'index'",
        "postgresql": "SELECT indexname FROM pg_indexes WHERE tablename = 'messages'",
    }[backend.name]
    engine = backend.engine()
    with engine.connect() as conn:
        assert "ix_lower_content" in set(conn.exec_driver_sql(indexes).scalars())
    engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_an_on_delete_in_a_column_level_references_clause_is_named_on_sqlite(
    backend: Backend, engine: Engine
) -> None:
    """SQLAlchemy reads no action from SQLite's column-level REFERENCES; SQLite's list does."""
    rebuild_sqlite_table(
        engine,
        "reactions",
        {
            ", \n\tCONSTRAINT fk_reactions_message_id_messages FOREIGN KEY(message_id)"
            " REFERENCES messages (id)": "",
            "message_id VARCHAR(32) NOT NULL": "message_id VARCHAR(32) NOT NULL"
            " CONSTRAINT fk_reactions_message_id_messages REFERENCES messages (id)"
            " ON DELETE SET NULL",
        },
    )
    assert drift(engine) == [
        f"table reactions: foreign key {REACTIONS_FK} (message_id) -> messages (id)"
        " has ON DELETE SET NULL in the database but no ON DELETE action in the schema"
    ]


SAME_COLLATION = {"sqlite": "NOCASE", "postgresql": "C", "mariadb": "utf8mb4_bin"}


@pytest.fixture
def declared(backend: Backend) -> Iterator[tuple[MetaData, Engine]]:
    """Tables declared with server defaults, a CHECK, foreign-key actions and a collation,
    created in the backend's empty database."""
    declared = MetaData()
    Table("parent", declared, Column("id", Integer, primary_key=True))
    Table(
        "child",
        declared,
        Column("id", Integer, primary_key=True),
        Column("parent_id", ForeignKey("parent.id", ondelete="CASCADE", onupdate="CASCADE")),
        Column("count", Integer, nullable=False, server_default=text("0")),
        Column("ratio", Float, nullable=False, server_default=text("1.5")),
        Column("label", String(20), nullable=False, server_default="none yet"),
        Column("created", DateTime, nullable=False, server_default=func.now()),
        Column("seen", DateTime, server_default=text("CURRENT_TIMESTAMP")),
        Column("code", String(10, collation=SAME_COLLATION[backend.name])),
        CheckConstraint("count >= 0 AND ratio < 10", name="ck_child_sane"),
        CheckConstraint("length(label) > 0 AND label != 'x'", name="ck_child_label"),
        CheckConstraint("code IN ('a', 'b') OR code IS NULL", name="ck_child_code"),
    )
    engine = backend.engine()
    declared.create_all(engine)
    yield declared, engine
    engine.dispose()


def test_a_schema_with_defaults_checks_and_actions_matches_itself_once_created(
    declared: tuple[MetaData, Engine],
) -> None:
    """What the database stores for each declaration counts as that declaration: PostgreSQL's
    casts and parentheses, MariaDB's quoting and its current_timestamp() spelling."""
    metadata, engine = declared
    with engine.connect() as conn:
        assert find_drift(conn, metadata) == []


def test_a_server_default_changed_by_hand_is_named_with_both_sides(
    backend: Backend, declared: tuple[MetaData, Engine]
) -> None:
    metadata, engine = declared
    if backend.name == "sqlite":
        rebuild_sqlite_table(engine, "child", {"DEFAULT 0": "DEFAULT 7"})
    else:
        run(engine, "ALTER TABLE child ALTER COLUMN count SET DEFAULT 7")
    with engine.connect() as conn:
        assert find_drift(conn, metadata) == [
            "table child: column count has default 7 in the database but 0 in the schema"
        ]


def test_an_index_redefined_by_hand_is_one_sentence_with_both_definitions(
    backend: Backend, engine: Engine
) -> None:
    on_table = " ON messages" if backend.name == "mariadb" else ""
    run(
        engine,
        f"DROP INDEX ix_messages_author_created{on_table}",
        "CREATE UNIQUE INDEX ix_messages_author_created ON messages (author_id, id)",
    )
    assert drift(engine) == [
        "table messages: index ix_messages_author_created is unique on (author_id, id)"
        " in the database but on (author_id, created_at) in the schema"
    ]
