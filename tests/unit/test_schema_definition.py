"""The frozen copy of version 1 in 001_initial.py against spec/data-model.md, and the rules every
schema keeps (001's and the newest, ``zos.schema.metadata``).

Pure tests: DDL is compiled for each supported dialect, never run. Tests of version 1 read 001,
never ``zos.schema``, so adding a migration (and its columns in schema.py) keeps them green.
"""

import ast
import importlib.util
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Text,
)
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.dialects.mysql.mariadb import MariaDBDialect
from sqlalchemy.dialects.sqlite.base import SQLiteDialect
from sqlalchemy.engine import Dialect
from sqlalchemy.schema import CreateTable
from sqlalchemy.types import TypeEngine

from tests.spec_v1 import FOREIGN_KEYS, INDEXES
from zos import schema

MIGRATION_FILE = Path(schema.__file__).parent / "migrations" / "001_initial.py"

# One line per column, in spec order: name, generic type, nullability, then "pk" and the
# client-side default where the spec gives them.
SPEC_COLUMNS = {
    "servers": """
        id String not-null pk
        name String null
        privacy_gate_role String null
        disabled_layers JSON null
        threads_as_topics Boolean not-null default=true
        chattiness_config JSON null
        created_at DateTime not-null default=now
    """,
    "users": """
        id String not-null pk
        first_dm_acknowledged Boolean not-null default=false
        first_dm_at DateTime null
    """,
    "user_server_tracking": """
        user_id String not-null
        server_id String not-null
        first_seen_at DateTime not-null default=now
    """,
    "channels": """
        id String not-null pk
        server_id String not-null
        name String null
        type String not-null
        parent_id String null
        created_at DateTime not-null default=now
    """,
    "messages": """
        id String not-null pk
        channel_id String not-null
        server_id String null
        author_id String not-null
        content Text not-null
        created_at DateTime not-null
        visibility_scope String not-null
        reactions_aggregate JSON null
        reply_to_id String null
        thread_id String null
        has_media Boolean not-null default=false
        has_links Boolean not-null default=false
        ingested_at DateTime not-null default=now
        deleted_at DateTime null
    """,
    "reactions": """
        id String not-null pk
        message_id String not-null
        user_id String not-null
        emoji String not-null
        is_custom Boolean not-null
        server_id String null
        created_at DateTime not-null default=now
        removed_at DateTime null
    """,
    "poll_state": """
        channel_id String not-null pk
        last_message_at DateTime null
        last_polled_at DateTime not-null
    """,
    "media_analysis": """
        id String not-null pk
        message_id String not-null
        media_type String not-null
        url String not-null
        filename String null
        width Integer null
        height Integer null
        duration_seconds Integer null
        description Text not-null
        analyzed_at DateTime not-null default=now
        analysis_model String null
    """,
    "link_analysis": """
        id String not-null pk
        message_id String not-null
        url Text not-null
        domain String not-null
        content_type String not-null
        title String null
        summary Text null
        is_youtube Boolean not-null default=false
        duration_seconds Integer null
        transcript_available Boolean null
        fetched_at DateTime null
        fetch_failed Boolean not-null default=false
        fetch_error String null
    """,
    "topics": """
        key String not-null pk
        category String not-null
        is_global Boolean not-null
        provisional Boolean not-null default=false
        created_at DateTime not-null default=now
        last_activity_at DateTime null
        metadata JSON null
    """,
    "salience_ledger": """
        id String not-null pk
        topic_key String not-null
        transaction_type String not-null
        amount Float not-null
        reason String null
        source_topic String null
        created_at DateTime not-null default=now
    """,
    "layer_runs": """
        id String not-null pk
        layer_name String not-null
        layer_hash String not-null
        started_at DateTime not-null
        completed_at DateTime null
        status String not-null
        targets_matched Integer not-null default=0
        targets_processed Integer not-null default=0
        targets_skipped Integer not-null default=0
        insights_created Integer not-null default=0
        model_profile String null
        model_provider String null
        model_name String null
        tokens_input Integer null
        tokens_output Integer null
        tokens_total Integer null
        estimated_cost_usd Float null
        errors JSON null
    """,
    "insights": """
        id String not-null pk
        topic_key String not-null
        category String not-null
        content Text not-null
        sources_scope_max String not-null
        created_at DateTime not-null
        layer_run_id String not-null
        supersedes String null
        quarantined Boolean not-null default=false
        salience_spent Float not-null
        strength_adjustment Float not-null
        strength Float not-null
        original_topic_salience Float not-null
        confidence Float not-null
        importance Float not-null
        novelty Float not-null
        valence_joy Float null
        valence_concern Float null
        valence_curiosity Float null
        valence_warmth Float null
        valence_tension Float null
        context_channel String null
        context_thread String null
        subject String null
        participants JSON null
        conflicts_with JSON null
        conflict_resolved Boolean null
        synthesis_source_ids JSON null
    """,
    "llm_calls": """
        id String not-null pk
        layer_run_id String null
        topic_key String null
        call_type String not-null
        model_profile String not-null
        model_provider String not-null
        model_name String not-null
        prompt Text not-null
        response Text not-null
        tokens_input Integer not-null
        tokens_output Integer not-null
        tokens_total Integer not-null
        estimated_cost_usd Float null
        latency_ms Integer null
        success Boolean not-null default=true
        error_message String null
        created_at DateTime not-null default=now
    """,
    "chattiness_ledger": """
        id String not-null pk
        pool String not-null
        channel_id String null
        topic_key String null
        transaction_type String not-null
        amount Float not-null
        trigger String null
        created_at DateTime not-null default=now
    """,
    "speech_pressure": """
        id String not-null pk
        amount Float not-null
        trigger String null
        server_id String null
        created_at DateTime not-null default=now
    """,
    "conversation_log": """
        id String not-null pk
        message_id String not-null
        channel_id String not-null
        server_id String null
        content Text not-null
        layer_name String not-null
        trigger_type String not-null
        impulse_pool String not-null
        impulse_spent Float not-null
        priority_flagged Boolean not-null default=false
        created_at DateTime not-null default=now
    """,
    "draft_history": """
        id String not-null pk
        channel_id String not-null
        thread_id String null
        content Text not-null
        layer_name String not-null
        discard_reason String null
        created_at DateTime not-null default=now
    """,
}


SPEC_JSON_COLUMNS = {
    "servers.disabled_layers",
    "servers.chattiness_config",
    "messages.reactions_aggregate",
    "topics.metadata",
    "layer_runs.errors",
    "insights.participants",
    "insights.conflicts_with",
    "insights.synthesis_source_ids",
}

DIALECTS: dict[str, Dialect] = {
    "sqlite": SQLiteDialect(),
    # SQLAlchemy leaves the PostgreSQL dialect constructor unannotated.
    "postgresql": postgresql.dialect(),  # type: ignore[no-untyped-call]
    "mysql": mysql.dialect(),
    "mariadb": MariaDBDialect(),
}


def generic_type(type_: TypeEngine[object]) -> str:
    # Order matters: Text is a String and Double is a Float in SQLAlchemy's hierarchy.
    for generic in (JSON, Boolean, DateTime, Text, String, Float, Integer):
        if isinstance(type_, generic):
            return generic.__name__
    raise AssertionError(f"unexpected column type {type_!r}")


def describe_default(column: Column[object]) -> str | None:
    default = column.default
    if default is None:
        return None
    if default.is_callable:
        wrapped = default.arg.__wrapped__  # type: ignore[attr-defined]
        return "now" if wrapped is schema.utcnow else repr(wrapped)
    assert default.is_scalar
    value = default.arg  # type: ignore[attr-defined]
    return str(value).lower()


def describe_column(column: Column[object]) -> str:
    parts = [column.name, generic_type(column.type), "null" if column.nullable else "not-null"]
    if column.primary_key:
        parts.append("pk")
    return " ".join(parts)


def spec_lines(table_name: str) -> list[list[str]]:
    return [line.split() for line in SPEC_COLUMNS[table_name].strip().splitlines()]


def all_columns(metadata: MetaData) -> list[Column[object]]:
    return [column for table in metadata.tables.values() for column in table.columns]


def load_migration() -> ModuleType:
    spec = importlib.util.spec_from_file_location("zos_migration_001_initial", MIGRATION_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def frozen_metadata() -> MetaData:
    metadata = load_migration()._metadata
    assert isinstance(metadata, MetaData)
    return metadata


V1 = frozen_metadata()
# The rules below hold for every version of the schema, so they run on 001 and on the newest.
SCHEMAS = {"001": V1, "metadata": schema.metadata}


def constraint_names(metadata: MetaData) -> list[str]:
    names: list[str] = []
    for table in metadata.tables.values():
        names.extend(str(index.name) for index in table.indexes)
        for constraint in table.constraints:
            # user_server_tracking's empty PrimaryKeyConstraint is never rendered.
            if isinstance(constraint, PrimaryKeyConstraint) and not constraint.columns:
                continue
            names.append(str(constraint.name))
    return names


def test_version_1_has_the_18_spec_tables_in_creation_order() -> None:
    assert list(V1.tables) == list(SPEC_COLUMNS)
    assert len(V1.tables) == 18


def test_version_1_has_176_columns() -> None:
    assert len(all_columns(V1)) == 176


@pytest.mark.parametrize("table_name", list(SPEC_COLUMNS))
def test_version_1_columns_match_the_spec_in_order_type_nullability_and_key(
    table_name: str,
) -> None:
    expected = [
        " ".join(w for w in words if not w.startswith("default="))
        for words in spec_lines(table_name)
    ]
    actual = [describe_column(column) for column in V1.tables[table_name].columns]
    assert actual == expected


def test_version_1_has_no_database_side_default() -> None:
    """The spec's defaults are applied by the application; 001 creates none in the database."""
    assert [c for c in all_columns(V1) if c.server_default is not None] == []


def test_the_schema_applies_the_spec_defaults_to_the_spec_columns_it_still_has() -> None:
    expected = {
        (table_name, words[0]): word.removeprefix("default=")
        for table_name in SPEC_COLUMNS
        for words in spec_lines(table_name)
        for word in words
        if word.startswith("default=")
    }
    assert len(expected) == 27
    live = schema.metadata.tables
    actual = {
        (table, column): describe_default(live[table].c[column])
        for table, column in expected
        if table in live and column in live[table].c
    }
    assert actual == {key: value for key, value in expected.items() if key in actual}
    # Version 1 declares no other client-side default.
    assert {
        (c.table.name, c.name) for c in all_columns(schema.metadata) if c.default is not None
    } - set(expected) == set()


def test_utcnow_is_the_current_utc_time_without_a_timezone() -> None:
    # Microseconds are dropped by neither clock; a bracket, not a pace.
    before = datetime.now(UTC).replace(tzinfo=None)
    now = schema.utcnow()
    after = datetime.now(UTC).replace(tzinfo=None)
    assert now.tzinfo is None
    assert before <= now <= after


def test_version_1_has_the_eight_json_columns() -> None:
    json_columns = {
        f"{column.table.name}.{column.name}"
        for column in all_columns(V1)
        if isinstance(column.type, JSON)
    }
    assert json_columns == SPEC_JSON_COLUMNS


def test_version_1_foreign_keys_are_exactly_the_ten_spec_relationships() -> None:
    foreign_keys = [
        (f"{table.name}.{fk.parent.name}", fk.target_fullname)
        for table in V1.tables.values()
        for fk in table.foreign_keys
    ]
    assert len(foreign_keys) == 10
    assert set(foreign_keys) == FOREIGN_KEYS


def test_version_1_foreign_keys_use_the_default_referential_actions() -> None:
    for table in V1.tables.values():
        for constraint in table.foreign_key_constraints:
            assert constraint.ondelete is None and constraint.onupdate is None


@pytest.mark.parametrize("version", list(SCHEMAS))
def test_foreign_keys_are_named_by_the_convention(version: str) -> None:
    for table in SCHEMAS[version].tables.values():
        for constraint in table.foreign_key_constraints:
            (element,) = constraint.elements
            expected = f"fk_{table.name}_{element.parent.name}_{element.column.table.name}"
            assert constraint.name == expected


def test_version_1_indexes_are_exactly_the_30_spec_indexes() -> None:
    indexes = {
        str(index.name): (
            table.name,
            tuple(column.name for column in index.columns),
            index.unique,
        )
        for table in V1.tables.values()
        for index in table.indexes
    }
    assert indexes == INDEXES
    assert sum(unique for _, _, unique in indexes.values()) == 1


def test_version_1_has_one_check_ck_insights_valence_required() -> None:
    checks = [
        (table.name, str(constraint.name))
        for table in V1.tables.values()
        for constraint in table.constraints
        if isinstance(constraint, CheckConstraint)
    ]
    assert checks == [("insights", "ck_insights_valence_required")]


def test_version_1_user_server_tracking_has_no_primary_key() -> None:
    table = V1.tables["user_server_tracking"]
    assert list(table.primary_key.columns) == []
    ddl = str(CreateTable(table).compile(dialect=DIALECTS["postgresql"]))
    assert "PRIMARY KEY" not in ddl


@pytest.mark.parametrize("version", list(SCHEMAS))
def test_primary_keys_are_named_pk_table(version: str) -> None:
    for table in SCHEMAS[version].tables.values():
        if table.primary_key.columns:
            assert table.primary_key.name == f"pk_{table.name}"


@pytest.mark.parametrize("version", list(SCHEMAS))
def test_index_and_constraint_names_fit_41_characters_and_are_unique(version: str) -> None:
    names = constraint_names(SCHEMAS[version])
    assert len(names) == len(set(names))
    assert [name for name in names if len(name) > 41] == []


@pytest.mark.parametrize("version", list(SCHEMAS))
def test_every_string_column_has_a_length_for_mysql(version: str) -> None:
    for column in all_columns(SCHEMAS[version]):
        if isinstance(column.type, String) and not isinstance(column.type, Text):
            assert column.type.length is not None, column


@pytest.mark.parametrize("version", list(SCHEMAS))
def test_booleans_generate_no_check_constraint(version: str) -> None:
    for table in SCHEMAS[version].tables.values():
        ddl = str(CreateTable(table).compile(dialect=DIALECTS["mysql"]))
        declared = [c for c in table.constraints if isinstance(c, CheckConstraint)]
        assert ddl.count("CHECK") == len(declared), table.name


@pytest.mark.parametrize("version", list(SCHEMAS))
@pytest.mark.parametrize("dialect_name", ["mysql", "mariadb"])
def test_mysql_types_keep_long_text_double_precision_and_microseconds(
    dialect_name: str, version: str
) -> None:
    dialect = DIALECTS[dialect_name]
    for column in all_columns(SCHEMAS[version]):
        rendered = column.type.compile(dialect=dialect)
        qualified = f"{column.table.name}.{column.name}"
        if isinstance(column.type, Text):
            assert rendered in ("MEDIUMTEXT", "LONGTEXT"), qualified
        elif isinstance(column.type, Float):
            assert rendered == "DOUBLE", qualified
        elif isinstance(column.type, DateTime):
            assert rendered == "DATETIME(6)", qualified


@pytest.mark.parametrize("dialect_name", ["mysql", "mariadb"])
def test_version_1_llm_text_is_long_and_other_text_medium(dialect_name: str) -> None:
    dialect = DIALECTS[dialect_name]
    large = {"llm_calls.prompt", "llm_calls.response"}
    for column in all_columns(V1):
        if isinstance(column.type, Text):
            rendered = column.type.compile(dialect=dialect)
            qualified = f"{column.table.name}.{column.name}"
            assert rendered == ("LONGTEXT" if qualified in large else "MEDIUMTEXT"), qualified
    assert V1.tables["media_analysis"].c.url.type.compile(dialect=dialect) == "VARCHAR(2048)"


@pytest.mark.parametrize("version", list(SCHEMAS))
def test_postgresql_types_are_double_precision_and_naive_timestamps(version: str) -> None:
    dialect = DIALECTS["postgresql"]
    for column in all_columns(SCHEMAS[version]):
        rendered = column.type.compile(dialect=dialect)
        if isinstance(column.type, Float):
            assert rendered == "DOUBLE PRECISION"
        elif isinstance(column.type, DateTime):
            assert rendered == "TIMESTAMP WITHOUT TIME ZONE"
        elif isinstance(column.type, Text):
            assert rendered == "TEXT"


def test_migration_declares_its_contract() -> None:
    module = load_migration()
    assert module.VERSION == 1
    assert module.DESCRIPTION == "Create the version-1 schema"
    assert callable(module.upgrade) and callable(module.check)


def test_migration_imports_nothing_from_zos() -> None:
    tree = ast.parse(MIGRATION_FILE.read_text())
    imported = [
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    ]
    assert all(name is not None and name.split(".")[0] == "sqlalchemy" for name in imported)
