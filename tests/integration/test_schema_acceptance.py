"""The acceptance checks for the initial migration (spec/data-model.md), run against a database
that the real migrations took from empty to version 1, on SQLite, PostgreSQL and MariaDB.

Tables are read from the frozen 001; the application's defaults (which 001 leaves to the
application) from ``zos.schema``, for the version-1 columns it still has."""

from __future__ import annotations

import itertools
import random
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, func, inspect, select, text
from sqlalchemy.exc import DBAPIError

from tests.conftest import Backend
from tests.initial import initial_metadata
from tests.spec_v1 import FOREIGN_KEYS, INDEXES, TABLES
from zos.config import Settings
from zos.ids import is_ulid, new_ulid
from zos.migrator import migrate
from zos.schema import metadata as live_metadata

Row = dict[str, Any]

VERSION_TABLE = "_schema_version"
metadata = initial_metadata()


NOW = "current UTC time"
# Every default the spec lists, per table; NOW stands for "current UTC time".
DEFAULTS: dict[str, dict[str, object]] = {
    "servers": {"threads_as_topics": True, "created_at": NOW},
    "users": {"first_dm_acknowledged": False},
    "user_server_tracking": {"first_seen_at": NOW},
    "channels": {"created_at": NOW},
    "messages": {"has_media": False, "has_links": False, "ingested_at": NOW},
    "reactions": {"created_at": NOW},
    "media_analysis": {"analyzed_at": NOW},
    "link_analysis": {"is_youtube": False, "fetch_failed": False},
    "topics": {"provisional": False, "created_at": NOW},
    "salience_ledger": {"created_at": NOW},
    "layer_runs": {
        "targets_matched": 0,
        "targets_processed": 0,
        "targets_skipped": 0,
        "insights_created": 0,
    },
    "insights": {"quarantined": False},
    "llm_calls": {"success": True, "created_at": NOW},
    "chattiness_ledger": {"created_at": NOW},
    "speech_pressure": {"created_at": NOW},
    "conversation_log": {"priority_flagged": False, "created_at": NOW},
    "draft_history": {"created_at": NOW},
}

VALENCES = [
    "valence_joy",
    "valence_concern",
    "valence_curiosity",
    "valence_warmth",
    "valence_tension",
]

SERVER, CHANNEL, MESSAGE, TOPIC = "100", "200", "300", "server:100:channel:200"
LAYER_RUN = "01J0000000000000000000RUN1"
WHEN = datetime(2024, 2, 29, 23, 59, 59, 123456)
_snowflakes = itertools.count(10_000)


@pytest.fixture
def engine(backend: Backend) -> Iterator[Engine]:
    """The backend's empty database, migrated to version 1 by the real migrations."""
    migrate(backend.settings(), target=1)
    engine = backend.engine()
    yield engine
    engine.dispose()


def snowflake() -> str:
    return str(next(_snowflakes))


def valid_row(table: str, **overrides: Any) -> Row:
    """A row for ``table`` with every required column, pointing at the seeded parents."""
    rows: dict[str, Row] = {
        "servers": {"id": snowflake()},
        "users": {"id": snowflake()},
        "user_server_tracking": {"user_id": snowflake(), "server_id": SERVER},
        "channels": {"id": snowflake(), "server_id": SERVER, "type": "text"},
        "messages": {
            "id": snowflake(),
            "channel_id": CHANNEL,
            "server_id": SERVER,
            "author_id": "400",
            "content": "hello",
            "created_at": WHEN,
            "visibility_scope": "public",
        },
        "reactions": {
            "id": new_ulid(),
            "message_id": MESSAGE,
            "user_id": "400",
            "emoji": "👍",
            "is_custom": False,
        },
        "poll_state": {"channel_id": snowflake(), "last_polled_at": WHEN},
        "media_analysis": {
            "id": new_ulid(),
            "message_id": MESSAGE,
            "media_type": "image",
            "url": "https://example.com/a.png",
            "description": "a cat",
        },
        "link_analysis": {
            "id": new_ulid(),
            "message_id": MESSAGE,
            "url": "https://example.com/",
            "domain": "example.com",
            "content_type": "article",
        },
        "topics": {
            "key": f"server:{SERVER}:user:{snowflake()}",
            "category": "user",
            "is_global": False,
        },
        "salience_ledger": {
            "id": new_ulid(),
            "topic_key": TOPIC,
            "transaction_type": "earn",
            "amount": 1.0,
        },
        "layer_runs": {
            "id": new_ulid(),
            "layer_name": "nightly",
            "layer_hash": "abc",
            "started_at": WHEN,
            "status": "success",
        },
        "insights": {
            "id": new_ulid(),
            "topic_key": TOPIC,
            "category": "channel_reflection",
            "content": "busy channel",
            "sources_scope_max": "public",
            "created_at": WHEN,
            "layer_run_id": LAYER_RUN,
            "salience_spent": 1.0,
            "strength_adjustment": 1.0,
            "strength": 1.0,
            "original_topic_salience": 1.0,
            "confidence": 0.5,
            "importance": 0.5,
            "novelty": 0.5,
            "valence_curiosity": 0.5,
        },
        "llm_calls": {
            "id": new_ulid(),
            "layer_run_id": LAYER_RUN,
            "call_type": "reflection",
            "model_profile": "moderate",
            "model_provider": "anthropic",
            "model_name": "model",
            "prompt": "p",
            "response": "r",
            "tokens_input": 1,
            "tokens_output": 1,
            "tokens_total": 2,
        },
        "chattiness_ledger": {
            "id": new_ulid(),
            "pool": "address",
            "transaction_type": "earn",
            "amount": 1.0,
        },
        "speech_pressure": {"id": new_ulid(), "amount": 1.0},
        "conversation_log": {
            "id": new_ulid(),
            "message_id": snowflake(),
            "channel_id": CHANNEL,
            "content": "hi",
            "layer_name": "reply",
            "trigger_type": "ping",
            "impulse_pool": "address",
            "impulse_spent": 1.0,
        },
        "draft_history": {
            "id": new_ulid(),
            "channel_id": CHANNEL,
            "content": "draft",
            "layer_name": "reply",
        },
    }
    return {**rows[table], **overrides}


def insert(conn: Connection, table: str, row: Row) -> None:
    """Insert into the version-1 table, with the defaults the application (``zos.schema``)
    applies to the version-1 columns ``row`` leaves out."""
    conn.execute(metadata.tables[table].insert(), {**application_defaults(table), **row})


def application_defaults(table: str) -> Row:
    live = live_metadata.tables.get(table)
    values: Row = {}
    for column in metadata.tables[table].columns:
        default = None if live is None or column.name not in live.c else live.c[column.name].default
        if default is not None and default.is_callable:
            values[column.name] = default.arg(None)  # type: ignore[attr-defined]
        elif default is not None:
            values[column.name] = default.arg  # type: ignore[attr-defined]
    return values


def seed_parents(engine: Engine) -> None:
    """The server, channel, message, topic and layer run that valid rows point at."""
    with engine.begin() as conn:
        insert(conn, "servers", valid_row("servers", id=SERVER))
        insert(conn, "channels", valid_row("channels", id=CHANNEL))
        insert(conn, "messages", valid_row("messages", id=MESSAGE))
        insert(conn, "topics", valid_row("topics", key=TOPIC, category="channel"))
        insert(conn, "layer_runs", valid_row("layer_runs", id=LAYER_RUN))


def read_back(conn: Connection, table: str, row: Row) -> Row:
    """The stored row with the same primary key (or, without one, the same values) as ``row``."""
    model = metadata.tables[table]
    keys = [column.name for column in model.primary_key.columns] or list(row)
    query = select(model).where(*(model.c[key] == row[key] for key in keys))
    return dict(conn.execute(query).mappings().one())


def count(conn: Connection, table: str, row: Row) -> int:
    model = metadata.tables[table]
    keys = [column.name for column in model.primary_key.columns]
    query = select(func.count()).select_from(model)
    return int(conn.execute(query.where(*(model.c[k] == row[k] for k in keys))).scalar_one())


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@contextmanager
def local_time_zone(name: str) -> Iterator[None]:
    """Run with the process's local time zone set to ``name`` (POSIX TZ rules)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TZ", name)
        time.tzset()
        try:
            yield
        finally:
            patch.undo()
            time.tzset()


def test_migration_creates_exactly_the_specified_tables_columns_keys_and_indexes(
    engine: Engine,
) -> None:
    """Code and later migrations rely on every table, column, key and index being exactly there."""
    inspector = inspect(engine)
    reflected = set(inspector.get_table_names()) - {VERSION_TABLE}
    assert sorted(reflected) == sorted(TABLES)
    assert sorted(metadata.tables) == sorted(TABLES)

    total_columns = 0
    for table in TABLES:
        model = metadata.tables[table]
        columns = inspector.get_columns(table)
        total_columns += len(columns)
        assert [c["name"] for c in columns] == list(model.columns.keys()), table
        assert {c["name"]: c["nullable"] for c in columns} == {
            c.name: c.nullable for c in model.columns
        }, table
        assert inspector.get_pk_constraint(table)["constrained_columns"] == [
            c.name for c in model.primary_key.columns
        ], table
    assert total_columns == 176
    assert inspector.get_pk_constraint("user_server_tracking")["constrained_columns"] == []

    foreign_keys: set[str] = set()
    fk_names: set[str] = set()
    for table in TABLES:
        for fk in inspector.get_foreign_keys(table):
            (column,), (target,) = fk["constrained_columns"], fk["referred_columns"]
            foreign_keys.add(f"{table}.{column} -> {fk['referred_table']}.{target}")
            fk_names.add(str(fk["name"]))
    assert foreign_keys == {f"{source} -> {target}" for source, target in FOREIGN_KEYS}

    indexes: dict[str, tuple[str, tuple[str, ...], bool]] = {}
    for table in TABLES:
        for index in inspector.get_indexes(table):
            # InnoDB adds an index for a foreign key no declared index covers, named after it.
            if index["name"] in fk_names:
                continue
            columns_ = tuple(str(c) for c in index["column_names"])
            indexes[str(index["name"])] = (table, columns_, bool(index["unique"]))
    assert indexes == INDEXES
    declared = {
        str(index.name): (table.name, tuple(c.name for c in index.columns), index.unique)
        for table in metadata.tables.values()
        for index in table.indexes
    }
    assert declared == INDEXES


def test_foreign_keys_reject_rows_pointing_at_missing_parents(
    engine: Engine, backend: Backend
) -> None:
    """A dangling reference would silently break every join reflection and the API make."""
    seed_parents(engine)
    cases = [source.split(".") for source, _ in sorted(FOREIGN_KEYS)]
    # Held open together, so SQLite must hand out three separate pooled connections.
    with engine.connect() as a, engine.connect() as b, engine.connect() as c:
        connections = [a, b, c]
        dbapi = {id(conn.connection.dbapi_connection) for conn in connections}
        assert len(dbapi) == 3
        for conn in connections:
            if backend.name == "sqlite":
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
                conn.rollback()
            for table, column in cases:
                row = valid_row(table, **{column: "missing"})
                with pytest.raises(DBAPIError) as caught, conn.begin():
                    insert(conn, table, row)
                assert "foreign key constraint" in str(caught.value.orig).lower(), (table, column)
                assert count(conn, table, row) == 0, (table, column)
                conn.rollback()
    with engine.begin() as conn:  # the same rows with their parents present are accepted
        for table, _column in cases:
            insert(conn, table, valid_row(table))


def test_insight_without_any_valence_is_rejected(engine: Engine) -> None:
    """Every insight must carry some emotional colour; the database is the last line of defence."""
    checks = [
        str(check["name"])
        for table in TABLES
        for check in inspect(engine).get_check_constraints(table)
    ]
    assert checks == ["ck_insights_valence_required"]
    seed_parents(engine)
    no_valence = valid_row("insights", valence_curiosity=None)
    with engine.connect() as conn:
        with pytest.raises(DBAPIError) as caught, conn.begin():
            insert(conn, "insights", no_valence)
        assert "ck_insights_valence_required" in str(caught.value.orig)
        assert count(conn, "insights", no_valence) == 0
        conn.rollback()
    with engine.begin() as conn:
        for valence in VALENCES:
            row = valid_row("insights", **{v: 0.0 if v == valence else None for v in VALENCES})
            insert(conn, "insights", row)
            assert read_back(conn, "insights", row)[valence] == 0.0


def test_user_is_tracked_once_per_server(engine: Engine) -> None:
    """Counting a user's servers (to warm their global topic) breaks on duplicate pairs."""
    with engine.begin() as conn:
        insert(conn, "user_server_tracking", {"user_id": "1", "server_id": "A"})
        insert(conn, "user_server_tracking", {"user_id": "1", "server_id": "B"})
        insert(conn, "user_server_tracking", {"user_id": "2", "server_id": "A"})
    with engine.connect() as conn:
        with pytest.raises(DBAPIError), conn.begin():
            insert(conn, "user_server_tracking", {"user_id": "1", "server_id": "A"})
        conn.rollback()
        model = metadata.tables["user_server_tracking"]
        rows = conn.execute(select(model.c.user_id, model.c.server_id)).all()
        assert sorted(tuple(r) for r in rows) == [("1", "A"), ("1", "B"), ("2", "A")]


def test_omitted_columns_receive_their_defaults(engine: Engine) -> None:
    """Callers rely on flags, counters and timestamps being filled in when they leave them out."""
    declared = {
        table.name: sorted(application_defaults(table.name)) for table in metadata.tables.values()
    }
    assert {t: sorted(d) for t, d in DEFAULTS.items()} == {t: d for t, d in declared.items() if d}
    seed_parents(engine)
    # A local time far from UTC, so a default of local time instead of UTC cannot pass.
    with local_time_zone("UTC-05"):
        assert datetime.now() - utcnow() > timedelta(hours=4)
        before = utcnow() - timedelta(seconds=1)
        rows = {table: valid_row(table) for table in DEFAULTS}
        with engine.begin() as conn:
            for table, row in rows.items():
                insert(conn, table, row)
        with engine.connect() as conn:
            stored = {table: read_back(conn, table, row) for table, row in rows.items()}
        after = utcnow() + timedelta(seconds=1)
    for table, defaults in DEFAULTS.items():
        for column, expected in defaults.items():
            value = stored[table][column]
            where = f"{table}.{column} = {value!r}"
            if expected == NOW:
                assert isinstance(value, datetime), where
                assert value.tzinfo is None, where
                assert before <= value <= after, where
            else:
                assert type(value) is type(expected), where
                assert value == expected, where


def test_ulids_are_valid_and_sort_in_generation_order_in_the_database(engine: Engine) -> None:
    """ORDER BY id must mean "oldest first" for every ledger and log, in Python and in SQL."""
    ids = [new_ulid() for _ in range(200)]
    while ids[-1][:10] == ids[0][:10]:  # reach past one millisecond's timestamp, no sleeping
        ids.append(new_ulid())
    assert all(is_ulid(i) for i in ids)
    assert len(set(ids)) == len(ids)
    assert sorted(ids) == ids
    seed_parents(engine)
    shuffled = list(ids)
    random.Random(1).shuffle(shuffled)
    with engine.begin() as conn:
        conn.execute(
            metadata.tables["salience_ledger"].insert(),
            [
                {**application_defaults("salience_ledger"), **valid_row("salience_ledger", id=i)}
                for i in shuffled
            ],
        )
    model = metadata.tables["salience_ledger"]
    with engine.connect() as conn:
        stored = list(conn.execute(select(model.c.id).order_by(model.c.id)).scalars())
    assert stored == ids


def test_sqlite_database_is_in_wal_mode_after_migration(tmp_path: Path) -> None:
    """The API reads while observation writes; without WAL readers would block the writer."""
    migrate(Settings(data_dir=tmp_path / "data"))
    database = tmp_path / "data" / "zos.db"
    assert database.is_file()
    with closing(sqlite3.connect(database)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_json_documents_round_trip_unchanged(engine: Engine) -> None:
    """Server settings, aggregates and insight links are stored as JSON and must come back equal."""
    config = {
        "threshold_min": 0.25,
        "threshold_max": 3,
        "output_channel": None,
        "pools_enabled": {"address": True, "curiosity": False},
        "nested": [1, "two", [3.5, {"four": ["é", "🙂", "雪"]}], None, False],
    }
    row = valid_row("servers", disabled_layers=["nightly", "weekly"], chattiness_config=config)
    with engine.begin() as conn:
        insert(conn, "servers", row)
    with engine.connect() as conn:
        stored = read_back(conn, "servers", row)
    assert stored["disabled_layers"] == ["nightly", "weekly"]
    assert stored["chattiness_config"] == config


def test_long_text_is_stored_without_truncation(engine: Engine) -> None:
    """Message bodies and full LLM prompts exceed MySQL's 64 KiB TEXT and must not be cut."""
    unit = "zos sees 🙂 é 雪 "
    body = (unit * 100_000)[:100_000]
    prompt = (unit * 1_000_000)[:1_000_000]
    seed_parents(engine)
    message = valid_row("messages", content=body)
    call = valid_row("llm_calls", prompt=prompt, response=body)
    with engine.begin() as conn:
        insert(conn, "messages", message)
        insert(conn, "llm_calls", call)
    with engine.connect() as conn:
        assert read_back(conn, "messages", message)["content"] == body
        stored = read_back(conn, "llm_calls", call)
    assert len(stored["prompt"]) == 1_000_000
    assert stored["prompt"] == prompt
    assert stored["response"] == body


def test_timestamps_keep_microseconds(engine: Engine) -> None:
    """Rows written within one second must keep their order; MySQL DATETIME would drop it."""
    seed_parents(engine)
    precise = datetime(2024, 2, 29, 23, 59, 59, 123456)
    message = valid_row("messages", created_at=precise, deleted_at=precise.replace(microsecond=1))
    with engine.begin() as conn:
        insert(conn, "messages", message)
    with engine.connect() as conn:
        stored = read_back(conn, "messages", message)
    assert stored["created_at"] == precise
    assert stored["created_at"].tzinfo is None
    assert stored["deleted_at"] == precise.replace(microsecond=1)


def test_float_amounts_keep_double_precision(engine: Engine) -> None:
    """Balances are sums of ledger amounts; single precision would make them drift."""
    amount = 0.1 + 0.2
    assert amount != 0.3  # needs double precision to survive
    seed_parents(engine)
    rows = {
        "salience_ledger": valid_row("salience_ledger", amount=amount),
        "chattiness_ledger": valid_row("chattiness_ledger", amount=-amount),
        "speech_pressure": valid_row("speech_pressure", amount=1 / 3),
        "llm_calls": valid_row("llm_calls", estimated_cost_usd=amount),
    }
    with engine.begin() as conn:
        for table, row in rows.items():
            insert(conn, table, row)
    with engine.connect() as conn:
        assert read_back(conn, "salience_ledger", rows["salience_ledger"])["amount"] == amount
        assert read_back(conn, "chattiness_ledger", rows["chattiness_ledger"])["amount"] == -amount
        assert read_back(conn, "speech_pressure", rows["speech_pressure"])["amount"] == 1 / 3
        cost = read_back(conn, "llm_calls", rows["llm_calls"])["estimated_cost_usd"]
        assert cost == amount
        total = conn.execute(text("SELECT SUM(amount) FROM salience_ledger")).scalar_one()
    assert float(total) == amount
