"""``zos.migrator.ops`` through the real runner on every backend: each change keeps every row,
child row, index and constraint it should, and a change the data cannot take is refused."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from sqlalchemy import Engine, MetaData, Table, event, exc, insert, inspect, select

from tests.conftest import REAL_MIGRATIONS, Backend, MakeMigrations, run_cli
from tests.initial import initial_metadata
from tests.integration.test_migrate import version_rows
from zos.database import metadata
from zos.migrator import ops
from zos.migrator.drift import find_drift

T = metadata.tables
BASE = datetime(2026, 1, 2, 3, 4, 5, 123456)
MESSAGE_CHILDREN = ("reactions", "media_analysis", "link_analysis")
VALENCE = (
    "valence_joy IS NOT NULL OR valence_concern IS NOT NULL OR valence_curiosity IS NOT NULL"
    " OR valence_warmth IS NOT NULL OR valence_tension IS NOT NULL"
)


@dataclass
class Migrated:
    """A database taken to version 1 by the real first migration, with rows in it."""

    backend: Backend
    folder: Path
    engine: Engine

    def migrate(self, version: int, body: str, *options: str) -> Result:
        """Add migration ``version`` whose ``upgrade(conn)`` runs ``body``, then ``db migrate``."""
        source = (
            "from sqlalchemy import Column, Integer, String, Text, text\n\n"
            "from zos.migrator import ops\n\n"
            f"VERSION = {version}\n"
            "DESCRIPTION = 'Change the schema with ops'\n\n\n"
            "def upgrade(conn):\n"
            f"{textwrap.indent(textwrap.dedent(body).strip(), '    ')}\n"
        )
        (self.folder / f"{version:03d}_change.py").write_text(source)
        return run_cli("db", "migrate", *options, env=self.backend.env(self.folder))

    def rows(self, table: str) -> list[dict[str, Any]]:
        """Every row of ``table`` as the database has it now, by primary key."""
        with self.engine.connect() as conn:
            live = Table(table, MetaData(), autoload_with=conn)
            query = select(live).order_by(*live.primary_key.columns)
            return [dict(row._mapping) for row in conn.execute(query)]

    def drift(self) -> list[str]:
        """What ``check`` reports against version 1 (the database's version before the test)."""
        with self.engine.connect() as conn:
            return find_drift(conn, initial_metadata())

    def versions(self) -> list[tuple[int, str]]:
        return [(version, state) for version, state, _ in version_rows(self.backend)]


@pytest.fixture
def db(backend: Backend, make_migrations: MakeMigrations) -> Iterator[Migrated]:
    initial = (REAL_MIGRATIONS / "001_initial.py").read_text()
    folder = make_migrations({"001_initial.py": initial})
    result = run_cli("db", "migrate", env=backend.env(folder))
    assert result.exit_code == 0, result.stderr
    engine = backend.engine()
    yield Migrated(backend, folder, engine)
    engine.dispose()


def seed(engine: Engine, messages: int = 200) -> None:
    """Rows in every table the tests change, with NULLs, JSON, booleans and microseconds."""
    servers = [
        {
            "id": f"s{n}",
            "name": f"Server {n}",
            "disabled_layers": ["a", n] if n else None,
            "threads_as_topics": n == 0,
            "created_at": BASE,
        }
        for n in range(2)
    ]
    channels = [
        {
            "id": f"c{n}",
            "server_id": f"s{n % 2}",
            "name": None if n == 2 else f"#{n}",
            "type": "text",
            "created_at": BASE + timedelta(microseconds=n),
        }
        for n in range(3)
    ]
    media = [
        {
            "id": f"ma{n:05d}",
            "message_id": f"m{n:05d}",
            "media_type": "image",
            "url": f"https://cdn.example/{n}.png",
            "width": n or None,
            "description": f"picture {n}",
            "analyzed_at": BASE,
        }
        for n in range(0, messages, 20)
    ]
    links = [
        {
            "id": f"la{n:05d}",
            "message_id": f"m{n:05d}",
            "url": f"https://e.org/{n}",
            "domain": "e.org",
            "content_type": "html",
            "is_youtube": n % 40 == 10,
            "fetch_failed": False,
            "fetched_at": BASE,
        }
        for n in range(10, messages, 20)
    ]
    topics = [
        {
            "key": f"server:s0:topic{n}",
            "category": "general",
            "is_global": n == 0,
            "provisional": False,
            "created_at": BASE,
            "metadata": {"n": n} if n else None,
        }
        for n in range(3)
    ]
    layer_run = {
        "id": "lr0",
        "layer_name": "reflect",
        "layer_hash": "h",
        "started_at": BASE,
        "status": "done",
        "errors": [{"e": 1}],
    }
    drafts = [
        {
            "id": f"d{n:03d}",
            "channel_id": f"c{n % 3}",
            "thread_id": f"t{n}" if n % 2 else None,
            "content": f"draft {n}",
            "layer_name": "speak",
            "discard_reason": None if n % 3 else f"reason {n}",
            "created_at": BASE,
        }
        for n in range(50)
    ]
    with engine.begin() as conn:
        conn.execute(insert(T["servers"]), servers)
        conn.execute(insert(T["channels"]), channels)
        conn.execute(insert(T["messages"]), [message(n) for n in range(messages)])
        conn.execute(insert(T["reactions"]), [reaction(n) for n in range(0, messages, 4)])
        conn.execute(insert(T["media_analysis"]), media)
        conn.execute(insert(T["link_analysis"]), links)
        conn.execute(insert(T["topics"]), topics)
        conn.execute(insert(T["layer_runs"]), layer_run)
        conn.execute(insert(T["salience_ledger"]), [ledger_entry(n) for n in range(30)])
        conn.execute(insert(T["insights"]), [insight(n) for n in range(20)])
        conn.execute(insert(T["draft_history"]), drafts)


def message(n: int, **values: Any) -> dict[str, Any]:
    return {
        "id": f"m{n:05d}",
        "channel_id": f"c{n % 3}",
        "server_id": None if n % 7 == 0 else f"s{n % 2}",
        "author_id": f"u{n % 13}",
        "content": "" if n == 1 else f"message {n} ünïcode ✓ " + "x" * (n % 50),
        "created_at": BASE + timedelta(seconds=n, microseconds=n),
        "visibility_scope": "public" if n % 2 else "dm",
        "reactions_aggregate": None if n % 3 else {"👍": n % 5, "list": [n, None, True]},
        "reply_to_id": f"m{n - 1:05d}" if n % 5 == 0 and n else None,
        "has_media": n % 20 == 0,
        "has_links": n % 20 == 10,
        "ingested_at": BASE + timedelta(microseconds=999_999 - n),
        "deleted_at": None if n % 11 else BASE + timedelta(days=1),
    } | values


def reaction(n: int, **values: Any) -> dict[str, Any]:
    return {
        "id": f"r{n:05d}",
        "message_id": f"m{n:05d}",
        "user_id": f"u{n % 5}",
        "emoji": "🎉" if n % 8 else "custom:42",
        "is_custom": n % 8 == 0,
        "created_at": BASE + timedelta(microseconds=n),
    } | values


def ledger_entry(n: int, **values: Any) -> dict[str, Any]:
    return {
        "id": f"sl{n:03d}",
        "topic_key": f"server:s0:topic{n % 3}",
        "transaction_type": "earn",
        "amount": n / 3,
        "created_at": BASE,
    } | values


def insight(n: int, **values: Any) -> dict[str, Any]:
    scores = dict.fromkeys(
        ("salience_spent", "strength_adjustment", "strength", "original_topic_salience"), 0.5
    ) | dict.fromkeys(("confidence", "importance", "novelty"), 0.25)
    return (
        {"id": f"i{n:03d}", "topic_key": f"server:s0:topic{n % 3}", "category": "user_reflection"}
        | {"content": f"insight {n}", "sources_scope_max": "public", "created_at": BASE}
        | {"layer_run_id": "lr0", "quarantined": n == 3, "participants": ["u1", "u2"]}
        | {"valence_joy": 0.9 if n % 2 else None, "valence_concern": None if n % 2 else 0.1}
        | scores
        | values
    )


def indexes(db: Migrated, table: str) -> list[tuple[str, tuple[str, ...], bool]]:
    with db.engine.connect() as conn:
        found = inspect(conn).get_indexes(table)
    return sorted((str(i["name"]), tuple(map(str, i["column_names"])), i["unique"]) for i in found)


def foreign_keys(db: Migrated, table: str) -> list[tuple[str, tuple[str, ...], str]]:
    with db.engine.connect() as conn:
        found = inspect(conn).get_foreign_keys(table)
    return sorted(
        (str(k["name"]), tuple(k["constrained_columns"]), k["referred_table"]) for k in found
    )


def nullable(db: Migrated, table: str, column: str) -> bool:
    with db.engine.connect() as conn:
        return next(c["nullable"] for c in inspect(conn).get_columns(table) if c["name"] == column)


def insert_row(db: Migrated, table: str, row: dict[str, Any]) -> None:
    with db.engine.begin() as conn:
        conn.execute(insert(T[table]), row)


def refused(db: Migrated, table: str, row: dict[str, Any]) -> bool:
    try:
        insert_row(db, table, row)
    except exc.DBAPIError:
        return True
    return False


def assert_refused(db: Migrated, result: Result, reason: str) -> None:
    """The migration failed as an operator sees it; SQLite and PostgreSQL kept version 1;
    MariaDB (whose DDL commits at once) marked version 2 unfinished when a change of it had
    committed, and otherwise (the server refused its first change) says nothing changed."""
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: 002_change.py failed: ")
    assert result.stderr.count("Error:") == 1 and "Traceback" not in result.stderr
    assert reason in result.stderr.lower()
    if db.backend.name == "mariadb":
        if db.versions() == [(1, "applied"), (2, "started")]:
            assert "marked unfinished" in result.stderr
        else:
            assert db.versions() == [(1, "applied")]
            assert "nothing was changed and nothing needs repair" in result.stderr
    else:
        assert db.versions() == [(1, "applied")]
        assert "rolled back and the database is unchanged" in result.stderr


def orphans(db: Migrated) -> list[Any]:
    if db.backend.name != "sqlite":
        return []  # the server enforces foreign keys on every statement
    with db.engine.connect() as conn:
        return list(conn.exec_driver_sql("PRAGMA foreign_key_check").all())


@contextmanager
def captured_sql() -> Iterator[list[str]]:
    """Every statement any engine sends while the body runs, whitespace collapsed."""
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(" ".join(statement.split()))

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(Engine, "before_cursor_execute", record)


def ddl_on(statements: list[str], table: str) -> list[str]:
    """The schema-changing and copying statements that name ``table``."""
    changing = re.compile(r"(ALTER|CREATE|DROP|INSERT INTO)\b", re.IGNORECASE)
    return [s for s in statements if changing.match(s) and re.search(rf"\b{table}\b", s)]


# Only SQLite rebuilds tables: these run the same fixtures on that backend alone.
SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


def test_making_messages_content_nullable_keeps_every_row_child_and_index(
    backend: Backend, db: Migrated
) -> None:
    seed(db.engine, messages=2000)
    watched = ("messages", *MESSAGE_CHILDREN)
    before = {table: db.rows(table) for table in watched}
    indexes_before, keys_before = indexes(db, "messages"), foreign_keys(db, "reactions")
    with captured_sql() as statements:
        result = db.migrate(2, 'ops.alter_column(conn, "messages", "content", nullable=True)')
    assert result.exit_code == 0, result.stderr
    assert {table: db.rows(table) for table in watched} == before
    assert len(before["messages"]) == 2000 and len(before["reactions"]) == 500
    assert indexes(db, "messages") == indexes_before
    assert {name for name, _, _ in indexes_before} >= {
        "ix_messages_channel_created",
        "ix_messages_author_created",
        "ix_messages_server_created",
    }
    assert foreign_keys(db, "reactions") == keys_before
    assert orphans(db) == []
    if backend.name == "sqlite":
        # The documented rebuild, with the rows copied by column name.
        # The rowids are copied too: messages has no INTEGER PRIMARY KEY.
        version_1 = initial_metadata().tables["messages"].c
        names = ", ".join(["rowid", *(f'"{column.name}"' for column in version_1)])
        rebuild = ddl_on(statements, "_zos_rebuild_messages")
        assert rebuild[0].startswith('CREATE TABLE "_zos_rebuild_messages" (')
        assert rebuild[1:] == [
            f'INSERT INTO "_zos_rebuild_messages" ({names}) SELECT {names} FROM "messages"',
            'ALTER TABLE "_zos_rebuild_messages" RENAME TO "messages"',
        ]
    insert_row(db, "messages", message(99_999, content=None))
    assert refused(db, "reactions", reaction(99_998))  # children still point at messages
    assert db.drift() == [
        "table messages: column content is nullable in the database but NOT NULL in the schema"
    ]


def test_rebuilding_parent_tables_keeps_their_children_attached(
    backend: Backend, db: Migrated
) -> None:
    seed(db.engine)
    watched = ("channels", "topics", "messages", "salience_ledger", "insights")
    before = {table: db.rows(table) for table in watched}
    children = ("messages", "salience_ledger", "insights")
    keys_before = {table: foreign_keys(db, table) for table in children}
    result = db.migrate(
        2,
        """
        ops.alter_column(conn, "channels", "type", nullable=True)
        ops.alter_column(conn, "topics", "category", nullable=True)
        """,
    )
    assert result.exit_code == 0, result.stderr
    assert {table: db.rows(table) for table in watched} == before
    assert {table: foreign_keys(db, table) for table in children} == keys_before
    assert orphans(db) == []
    assert refused(db, "messages", message(99_999, channel_id="c-missing"))
    assert refused(db, "salience_ledger", ledger_entry(99, topic_key="missing"))
    assert db.drift() == [
        "table channels: column type is nullable in the database but NOT NULL in the schema",
        "table topics: column category is nullable in the database but NOT NULL in the schema",
    ]


def test_changing_a_column_type_keeps_its_values(backend: Backend, db: Migrated) -> None:
    seed(db.engine)
    before = db.rows("draft_history")
    result = db.migrate(
        2, 'ops.alter_column(conn, "draft_history", "discard_reason", type_=String(1000))'
    )
    assert result.exit_code == 0, result.stderr
    assert db.rows("draft_history") == before
    long_reason = {"discard_reason": "r" * 1000}
    insert_row(db, "draft_history", before[0] | {"id": "d-long"} | long_reason)
    assert db.drift() == [
        "table draft_history: column discard_reason has type VARCHAR(1000) in the database"
        " but VARCHAR(255) in the schema"
    ]


def test_a_server_default_can_be_set_and_dropped(backend: Backend, db: Migrated) -> None:
    seed(db.engine)
    before = db.rows("draft_history")
    set_default = "ops.alter_column(conn, 'draft_history', 'layer_name', server_default=\"'none'\")"
    assert db.migrate(2, set_default).exit_code == 0
    without_layer = {"channel_id": "c0", "content": "x", "created_at": BASE}
    with db.engine.begin() as conn:
        conn.execute(insert(T["draft_history"]).values(id="d-default", **without_layer))
    after = {row["id"]: row for row in db.rows("draft_history")}
    assert after.pop("d-default")["layer_name"] == "none"
    assert list(after.values()) == before
    drop_default = "ops.alter_column(conn, 'draft_history', 'layer_name', server_default=None)"
    assert db.migrate(3, drop_default).exit_code == 0
    with pytest.raises(exc.DBAPIError), db.engine.begin() as conn:
        conn.execute(insert(T["draft_history"]).values(id="d-none", **without_layer))
    assert db.drift() == []


def test_tightening_a_column_that_holds_nulls_to_not_null_is_refused(
    backend: Backend, db: Migrated
) -> None:
    seed(db.engine)
    before = db.rows("draft_history")
    result = db.migrate(2, 'ops.alter_column(conn, "draft_history", "thread_id", nullable=False)')
    assert_refused(db, result, reason="data truncated" if backend.name == "mariadb" else "null")
    assert db.rows("draft_history") == before
    assert nullable(db, "draft_history", "thread_id")


def test_widening_a_check_constraint_keeps_old_rows_and_enforces_the_new_rule(
    backend: Backend, db: Migrated
) -> None:
    seed(db.engine)
    before = db.rows("insights")
    no_valence = {"valence_joy": None, "valence_concern": None}
    assert refused(db, "insights", insight(90, category="meta", **no_valence))
    result = db.migrate(
        2,
        f"""
        ops.drop_check(conn, "insights", "ck_insights_valence_required")
        widened = "{VALENCE} OR category = 'meta'"
        ops.add_check(conn, "insights", "ck_insights_valence_or_meta", widened)
        """,
    )
    assert result.exit_code == 0, result.stderr
    assert db.rows("insights") == before
    insert_row(db, "insights", insight(91, category="meta", **no_valence))
    assert refused(db, "insights", insight(92, category="other", **no_valence))
    with db.engine.connect() as conn:
        checks = inspect(conn).get_check_constraints("insights")
    assert [c["name"] for c in checks if str(c["name"]).startswith("ck_")] == [
        "ck_insights_valence_or_meta"
    ]
    # zos.schema still declares the old rule, and zos db check names both constraints.
    assert [(d.split()[4], d.endswith("is missing from the database")) for d in db.drift()] == [
        ("ck_insights_valence_or_meta", False),
        ("ck_insights_valence_required", True),
    ]


def test_adding_columns_fills_existing_rows_without_a_rebuild(
    backend: Backend, db: Migrated
) -> None:
    seed(db.engine)
    before = db.rows("draft_history")
    with captured_sql() as statements:
        result = db.migrate(
            2,
            """
            attempts = Column("attempts", Integer, nullable=False, server_default=text("0"))
            ops.add_column(conn, "draft_history", attempts)
            ops.add_column(conn, "draft_history", Column("note", Text, nullable=True))
            """,
        )
    assert result.exit_code == 0, result.stderr
    assert db.rows("draft_history") == [row | {"attempts": 0, "note": None} for row in before]
    not_null = "NOT NULL DEFAULT 0" if backend.name == "mariadb" else "DEFAULT 0 NOT NULL"
    assert ddl_on(statements, "draft_history") == [
        f"ALTER TABLE draft_history ADD COLUMN attempts INTEGER {not_null}",
        "ALTER TABLE draft_history ADD COLUMN note TEXT",
    ]
    assert db.drift() == [
        "table draft_history: column attempts is in the database but not in the schema",
        "table draft_history: column note is in the database but not in the schema",
    ]


def test_a_not_null_column_without_a_constant_default_is_added_by_a_rebuild_on_sqlite(
    backend: Backend, db: Migrated
) -> None:
    seed(db.engine)
    before = db.rows("draft_history")
    with captured_sql() as statements:
        result = db.migrate(
            2,
            """
            now = text("CURRENT_TIMESTAMP")
            stamp = Column("stamp", String(40), nullable=False, server_default=now)
            ops.add_column(conn, "draft_history", stamp)
            """,
        )
    assert result.exit_code == 0, result.stderr
    after = db.rows("draft_history")
    assert [{k: v for k, v in row.items() if k != "stamp"} for row in after] == before
    assert all(row["stamp"] for row in after)
    rebuilt = any(s.startswith('CREATE TABLE "_zos_rebuild_draft_history"') for s in statements)
    assert rebuilt == (backend.name == "sqlite")


def test_dropping_and_renaming_columns_keep_the_other_data_without_a_rebuild(
    backend: Backend, db: Migrated
) -> None:
    seed(db.engine)
    before = db.rows("draft_history")
    with captured_sql() as statements:
        result = db.migrate(
            2,
            """
            ops.drop_column(conn, "draft_history", "discard_reason")
            ops.rename_column(conn, "draft_history", "layer_name", "layer_kind")
            """,
        )
    assert result.exit_code == 0, result.stderr
    renamed = [
        {"layer_kind" if k == "layer_name" else k: v for k, v in row.items()} for row in before
    ]
    assert db.rows("draft_history") == [
        {k: v for k, v in row.items() if k != "discard_reason"} for row in renamed
    ]
    assert ddl_on(statements, "draft_history") == [
        "ALTER TABLE draft_history DROP COLUMN discard_reason",
        "ALTER TABLE draft_history RENAME COLUMN layer_name TO layer_kind",
    ]
    columns = ("channel_id", "thread_id", "created_at")
    assert indexes(db, "draft_history") == [
        ("ix_draft_history_channel_thread_created", columns, False)
    ]
    assert db.drift() == [
        "table draft_history: column discard_reason is missing from the database",
        "table draft_history: column layer_kind is in the database but not in the schema",
        "table draft_history: column layer_name is missing from the database",
    ]


def test_dropping_an_indexed_column_drops_its_index_on_every_backend(
    backend: Backend, db: Migrated
) -> None:
    seed(db.engine)
    before = db.rows("draft_history")
    with captured_sql() as statements:
        result = db.migrate(2, 'ops.drop_column(conn, "draft_history", "thread_id")')
    assert result.exit_code == 0, result.stderr
    assert db.rows("draft_history") == [
        {k: v for k, v in row.items() if k != "thread_id"} for row in before
    ]
    assert indexes(db, "draft_history") == []
    # SQLite drops the index first, as PostgreSQL does by itself, so no rebuild is needed.
    assert not any("_zos_rebuild_" in s for s in statements)
    assert db.drift() == [
        "table draft_history: column thread_id is missing from the database",
        "table draft_history: index ix_draft_history_channel_thread_created"
        " is missing from the database",
    ]


def test_a_unique_constraint_refuses_duplicates_until_it_is_dropped(
    backend: Backend, db: Migrated
) -> None:
    seed(db.engine)
    before = db.rows("reactions")
    name = "uq_reactions_message_user_emoji"
    add = f'ops.add_unique(conn, "reactions", "{name}", ["message_id", "user_id", "emoji"])'
    result = db.migrate(2, add)
    assert result.exit_code == 0, result.stderr
    assert db.rows("reactions") == before
    duplicate = reaction(0, id="r-dup")
    assert refused(db, "reactions", duplicate)
    assert [line for line in db.drift() if name not in line] == []
    result = db.migrate(3, f'ops.drop_unique(conn, "reactions", "{name}")')
    assert result.exit_code == 0, result.stderr
    insert_row(db, "reactions", duplicate)
    assert db.drift() == []


def test_a_foreign_key_refuses_orphans_until_it_is_dropped(backend: Backend, db: Migrated) -> None:
    seed(db.engine)
    before = db.rows("draft_history")
    name = "fk_draft_history_channel_id_channels"
    add = (
        f'ops.add_foreign_key(conn, "draft_history", "{name}", ["channel_id"], "channels", ["id"])'
    )
    result = db.migrate(2, add)
    assert result.exit_code == 0, result.stderr
    assert db.rows("draft_history") == before
    assert foreign_keys(db, "draft_history") == [(name, ("channel_id",), "channels")]
    orphan = before[0] | {"id": "d-orphan", "channel_id": "c-missing"}
    assert refused(db, "draft_history", orphan)
    assert [line for line in db.drift() if name not in line] == []
    result = db.migrate(3, f'ops.drop_foreign_key(conn, "draft_history", "{name}")')
    assert result.exit_code == 0, result.stderr
    assert foreign_keys(db, "draft_history") == []
    insert_row(db, "draft_history", orphan)
    assert db.drift() == []


def test_adding_a_foreign_key_over_values_with_no_parent_is_refused(
    backend: Backend, db: Migrated
) -> None:
    seed(db.engine)
    insert_row(db, "draft_history", db.rows("draft_history")[0] | {"id": "d-x", "channel_id": "c9"})
    before = db.rows("draft_history")
    name = "fk_draft_history_channel_id_channels"
    add = (
        f'ops.add_foreign_key(conn, "draft_history", "{name}", ["channel_id"], "channels", ["id"])'
    )
    assert_refused(db, db.migrate(2, add), reason="foreign key")
    assert db.rows("draft_history") == before
    assert foreign_keys(db, "draft_history") == []


def test_a_rebuild_that_would_orphan_child_rows_is_refused(backend: Backend, db: Migrated) -> None:
    seed(db.engine)
    before = {table: db.rows(table) for table in ("messages", *MESSAGE_CHILDREN)}
    result = db.migrate(
        2,
        """
        ops.alter_column(conn, "messages", "content", nullable=True)
        conn.execute(text("DELETE FROM messages WHERE id IN ('m00000', 'm00004')"))
        """,
    )
    assert_refused(db, result, reason="foreign key")
    assert {table: db.rows(table) for table in before} == before
    assert orphans(db) == []
    # MariaDB committed the ALTER before the DELETE was refused; the others rolled it back.
    assert nullable(db, "messages", "content") == (backend.name == "mariadb")


@SQLITE_ONLY
def test_a_rebuild_with_sqlite_foreign_keys_on_is_refused_before_it_starts(db: Migrated) -> None:
    """Outside the runner enforcement is on, and DROP TABLE would first delete every row."""
    seed(db.engine)
    before = db.rows("messages")
    with db.engine.begin() as conn, pytest.raises(RuntimeError, match="foreign keys off"):
        ops.alter_column(conn, "messages", "content", nullable=True)
    assert db.rows("messages") == before
    assert not nullable(db, "messages", "content")


@SQLITE_ONLY
def test_a_rebuild_keeps_the_tables_triggers_and_the_views_that_read_it(db: Migrated) -> None:
    seed(db.engine)
    with db.engine.begin() as conn:
        conn.exec_driver_sql("CREATE VIEW message_counts AS SELECT count(*) AS n FROM messages")
        conn.exec_driver_sql(
            "CREATE TRIGGER messages_mark_channel AFTER INSERT ON messages BEGIN"
            " UPDATE channels SET name = 'busy' WHERE id = NEW.channel_id; END"
        )
    result = db.migrate(2, 'ops.alter_column(conn, "messages", "content", nullable=True)')
    assert result.exit_code == 0, result.stderr
    insert_row(db, "messages", message(99_999, channel_id="c2", content=None))
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT n FROM message_counts").scalar() == 201
        assert conn.exec_driver_sql("SELECT name FROM channels WHERE id = 'c2'").scalar() == "busy"


@SQLITE_ONLY
def test_a_rebuild_keeps_a_self_reference_and_a_column_level_delete_action(db: Migrated) -> None:
    """SQLAlchemy does not read ON DELETE from a column-level REFERENCES; the rebuild must."""
    with db.engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL, title TEXT NOT NULL,"
            " parent_id TEXT REFERENCES notes (id) ON DELETE CASCADE) STRICT"
        )
        conn.exec_driver_sql("INSERT INTO notes VALUES ('a', 'root', NULL), ('b', 'leaf', 'a')")
    before = db.rows("notes")
    result = db.migrate(2, 'ops.alter_column(conn, "notes", "title", nullable=True)')
    assert result.exit_code == 0, result.stderr
    assert db.rows("notes") == before
    with db.engine.begin() as conn:
        keys = conn.exec_driver_sql("PRAGMA foreign_key_list(notes)").all()
        assert [(k[2], k[3], k[4], k[6]) for k in keys] == [("notes", "parent_id", "id", "CASCADE")]
        created = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = 'notes'")
        assert created.scalar_one().endswith("STRICT")
        conn.exec_driver_sql("DELETE FROM notes WHERE id = 'a'")
        assert conn.exec_driver_sql("SELECT count(*) FROM notes").scalar() == 0


def test_a_dry_run_rehearses_a_rebuild_as_the_real_run_will_go(db: Migrated) -> None:
    seed(db.engine)
    change = 'ops.alter_column(conn, "messages", "content", nullable=True)'
    result = db.migrate(2, change, "--dry-run")
    assert (result.exit_code, result.stderr) == (0, "")
    assert "Would migrate from version 1 to 2" in result.stdout
    assert "FAILED" not in result.stdout
    assert db.versions() == [(1, "applied")]
