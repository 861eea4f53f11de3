"""Create the version-1 schema: 18 tables, their foreign keys, 30 indexes and the valence check.

FROZEN: this file must create the same schema forever, so it carries its own copy of the
version-1 tables and imports SQLAlchemy only, never zos.schema. Change the schema in a new file.
"""

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    Connection,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    inspect,
)
from sqlalchemy.dialects import mysql

VERSION = 1
DESCRIPTION = "Create the version-1 schema"

_metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Defaults are applied by the application, not the database, so none appear here.
_SNOWFLAKE = String(32)
_ULID = String(26)
_TOPIC_KEY = String(255)
_NAME = String(255)
_KIND = String(64)
_REASON = String(255)
_URL = String(2048)
_TITLE = String(512)
_BODY = Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
_LARGE_BODY = Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
_REAL: Double[float] = Double()
_TIMESTAMP = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
_FLAG = Boolean(create_constraint=False)
_DOCUMENT = JSON()


def upgrade(conn: Connection) -> None:
    """Create every version-1 table and its indexes, parents first, in the caller's transaction."""
    for table in _metadata.tables.values():
        table.create(conn, checkfirst=False)


def check(conn: Connection) -> bool:
    """Return True when every version-1 table exists with all its columns; changes nothing."""
    inspector = inspect(conn)
    existing = set(inspector.get_table_names())
    for table in _metadata.tables.values():
        if table.name not in existing:
            return False
        present = {column["name"] for column in inspector.get_columns(table.name)}
        if not set(table.columns.keys()) <= present:
            return False
    return True


Table(
    "servers",
    _metadata,
    Column("id", _SNOWFLAKE, primary_key=True),
    Column("name", _NAME, nullable=True),
    Column("privacy_gate_role", _SNOWFLAKE, nullable=True),
    Column("disabled_layers", _DOCUMENT, nullable=True),
    Column("threads_as_topics", _FLAG, nullable=False),
    Column("chattiness_config", _DOCUMENT, nullable=True),
    Column("created_at", _TIMESTAMP, nullable=False),
)

Table(
    "users",
    _metadata,
    Column("id", _SNOWFLAKE, primary_key=True),
    Column("first_dm_acknowledged", _FLAG, nullable=False),
    Column("first_dm_at", _TIMESTAMP, nullable=True),
)

# Version 1 declares no primary key here; the unique index keeps the name it always had.
Table(
    "user_server_tracking",
    _metadata,
    Column("user_id", _SNOWFLAKE, nullable=False),
    Column("server_id", _SNOWFLAKE, nullable=False),
    Column("first_seen_at", _TIMESTAMP, nullable=False),
    Index("pk_user_server_tracking", "user_id", "server_id", unique=True),
    Index("ix_user_server_tracking_user", "user_id"),
)

Table(
    "channels",
    _metadata,
    Column("id", _SNOWFLAKE, primary_key=True),
    Column("server_id", _SNOWFLAKE, ForeignKey("servers.id"), nullable=False),
    Column("name", _NAME, nullable=True),
    Column("type", _KIND, nullable=False),
    Column("parent_id", _SNOWFLAKE, nullable=True),
    Column("created_at", _TIMESTAMP, nullable=False),
)

Table(
    "messages",
    _metadata,
    Column("id", _SNOWFLAKE, primary_key=True),
    Column("channel_id", _SNOWFLAKE, ForeignKey("channels.id"), nullable=False),
    Column("server_id", _SNOWFLAKE, ForeignKey("servers.id"), nullable=True),
    Column("author_id", _SNOWFLAKE, nullable=False),
    Column("content", _BODY, nullable=False),
    Column("created_at", _TIMESTAMP, nullable=False),
    Column("visibility_scope", _KIND, nullable=False),
    Column("reactions_aggregate", _DOCUMENT, nullable=True),
    Column("reply_to_id", _SNOWFLAKE, nullable=True),
    Column("thread_id", _SNOWFLAKE, nullable=True),
    Column("has_media", _FLAG, nullable=False),
    Column("has_links", _FLAG, nullable=False),
    Column("ingested_at", _TIMESTAMP, nullable=False),
    Column("deleted_at", _TIMESTAMP, nullable=True),
    Index("ix_messages_channel_created", "channel_id", "created_at"),
    Index("ix_messages_author_created", "author_id", "created_at"),
    Index("ix_messages_server_created", "server_id", "created_at"),
)

Table(
    "reactions",
    _metadata,
    Column("id", _ULID, primary_key=True),
    Column("message_id", _SNOWFLAKE, ForeignKey("messages.id"), nullable=False),
    Column("user_id", _SNOWFLAKE, nullable=False),
    Column("emoji", _NAME, nullable=False),
    Column("is_custom", _FLAG, nullable=False),
    Column("server_id", _SNOWFLAKE, nullable=True),
    Column("created_at", _TIMESTAMP, nullable=False),
    Column("removed_at", _TIMESTAMP, nullable=True),
    Index("ix_reactions_message", "message_id"),
    Index("ix_reactions_user_created", "user_id", "created_at"),
    Index("ix_reactions_emoji_server", "emoji", "server_id"),
)

Table(
    "poll_state",
    _metadata,
    Column("channel_id", _SNOWFLAKE, primary_key=True),
    Column("last_message_at", _TIMESTAMP, nullable=True),
    Column("last_polled_at", _TIMESTAMP, nullable=False),
)

Table(
    "media_analysis",
    _metadata,
    Column("id", _ULID, primary_key=True),
    Column("message_id", _SNOWFLAKE, ForeignKey("messages.id"), nullable=False),
    Column("media_type", _KIND, nullable=False),
    Column("url", _URL, nullable=False),
    Column("filename", _NAME, nullable=True),
    Column("width", Integer, nullable=True),
    Column("height", Integer, nullable=True),
    Column("duration_seconds", Integer, nullable=True),
    Column("description", _BODY, nullable=False),
    Column("analyzed_at", _TIMESTAMP, nullable=False),
    Column("analysis_model", _NAME, nullable=True),
    Index("ix_media_analysis_message", "message_id"),
)

Table(
    "link_analysis",
    _metadata,
    Column("id", _ULID, primary_key=True),
    Column("message_id", _SNOWFLAKE, ForeignKey("messages.id"), nullable=False),
    Column("url", _BODY, nullable=False),
    Column("domain", _NAME, nullable=False),
    Column("content_type", _KIND, nullable=False),
    Column("title", _TITLE, nullable=True),
    Column("summary", _BODY, nullable=True),
    Column("is_youtube", _FLAG, nullable=False),
    Column("duration_seconds", Integer, nullable=True),
    Column("transcript_available", _FLAG, nullable=True),
    Column("fetched_at", _TIMESTAMP, nullable=True),
    Column("fetch_failed", _FLAG, nullable=False),
    Column("fetch_error", _REASON, nullable=True),
    Index("ix_link_analysis_message", "message_id"),
    # The name says "created" but the table has no created_at; version 1 indexes fetched_at.
    Index("ix_link_analysis_domain_created", "domain", "fetched_at"),
)

Table(
    "topics",
    _metadata,
    Column("key", _TOPIC_KEY, primary_key=True),
    Column("category", _KIND, nullable=False),
    Column("is_global", _FLAG, nullable=False),
    Column("provisional", _FLAG, nullable=False),
    Column("created_at", _TIMESTAMP, nullable=False),
    Column("last_activity_at", _TIMESTAMP, nullable=True),
    Column("metadata", _DOCUMENT, nullable=True),
    Index("ix_topics_category", "category"),
    Index("ix_topics_global", "is_global"),
    Index("ix_topics_provisional", "provisional"),
)

Table(
    "salience_ledger",
    _metadata,
    Column("id", _ULID, primary_key=True),
    Column("topic_key", _TOPIC_KEY, ForeignKey("topics.key"), nullable=False),
    Column("transaction_type", _KIND, nullable=False),
    Column("amount", _REAL, nullable=False),
    Column("reason", _REASON, nullable=True),
    Column("source_topic", _TOPIC_KEY, nullable=True),
    Column("created_at", _TIMESTAMP, nullable=False),
    Index("ix_salience_ledger_topic_created", "topic_key", "created_at"),
)

Table(
    "layer_runs",
    _metadata,
    Column("id", _ULID, primary_key=True),
    Column("layer_name", _NAME, nullable=False),
    Column("layer_hash", _NAME, nullable=False),
    Column("started_at", _TIMESTAMP, nullable=False),
    Column("completed_at", _TIMESTAMP, nullable=True),
    Column("status", _KIND, nullable=False),
    Column("targets_matched", Integer, nullable=False),
    Column("targets_processed", Integer, nullable=False),
    Column("targets_skipped", Integer, nullable=False),
    Column("insights_created", Integer, nullable=False),
    Column("model_profile", _NAME, nullable=True),
    Column("model_provider", _NAME, nullable=True),
    Column("model_name", _NAME, nullable=True),
    Column("tokens_input", Integer, nullable=True),
    Column("tokens_output", Integer, nullable=True),
    Column("tokens_total", Integer, nullable=True),
    Column("estimated_cost_usd", _REAL, nullable=True),
    Column("errors", _DOCUMENT, nullable=True),
    Index("ix_layer_runs_name_started", "layer_name", "started_at"),
    Index("ix_layer_runs_status", "status"),
)

Table(
    "insights",
    _metadata,
    Column("id", _ULID, primary_key=True),
    Column("topic_key", _TOPIC_KEY, ForeignKey("topics.key"), nullable=False),
    Column("category", _KIND, nullable=False),
    Column("content", _BODY, nullable=False),
    Column("sources_scope_max", _KIND, nullable=False),
    Column("created_at", _TIMESTAMP, nullable=False),
    Column("layer_run_id", _ULID, ForeignKey("layer_runs.id"), nullable=False),
    Column("supersedes", _ULID, nullable=True),
    Column("quarantined", _FLAG, nullable=False),
    Column("salience_spent", _REAL, nullable=False),
    Column("strength_adjustment", _REAL, nullable=False),
    Column("strength", _REAL, nullable=False),
    Column("original_topic_salience", _REAL, nullable=False),
    Column("confidence", _REAL, nullable=False),
    Column("importance", _REAL, nullable=False),
    Column("novelty", _REAL, nullable=False),
    Column("valence_joy", _REAL, nullable=True),
    Column("valence_concern", _REAL, nullable=True),
    Column("valence_curiosity", _REAL, nullable=True),
    Column("valence_warmth", _REAL, nullable=True),
    Column("valence_tension", _REAL, nullable=True),
    Column("context_channel", _TOPIC_KEY, nullable=True),
    Column("context_thread", _TOPIC_KEY, nullable=True),
    Column("subject", _TOPIC_KEY, nullable=True),
    Column("participants", _DOCUMENT, nullable=True),
    Column("conflicts_with", _DOCUMENT, nullable=True),
    Column("conflict_resolved", _FLAG, nullable=True),
    Column("synthesis_source_ids", _DOCUMENT, nullable=True),
    Index("ix_insights_topic_created", "topic_key", "created_at"),
    Index("ix_insights_category_created", "category", "created_at"),
    Index("ix_insights_quarantined", "quarantined"),
    Index("ix_insights_layer_run", "layer_run_id"),
    CheckConstraint(
        "valence_joy IS NOT NULL OR valence_concern IS NOT NULL"
        " OR valence_curiosity IS NOT NULL OR valence_warmth IS NOT NULL"
        " OR valence_tension IS NOT NULL",
        name="valence_required",
    ),
)

Table(
    "llm_calls",
    _metadata,
    Column("id", _ULID, primary_key=True),
    Column("layer_run_id", _ULID, ForeignKey("layer_runs.id"), nullable=True),
    Column("topic_key", _TOPIC_KEY, nullable=True),
    Column("call_type", _KIND, nullable=False),
    Column("model_profile", _NAME, nullable=False),
    Column("model_provider", _NAME, nullable=False),
    Column("model_name", _NAME, nullable=False),
    Column("prompt", _LARGE_BODY, nullable=False),
    Column("response", _LARGE_BODY, nullable=False),
    Column("tokens_input", Integer, nullable=False),
    Column("tokens_output", Integer, nullable=False),
    Column("tokens_total", Integer, nullable=False),
    Column("estimated_cost_usd", _REAL, nullable=True),
    Column("latency_ms", Integer, nullable=True),
    Column("success", _FLAG, nullable=False),
    Column("error_message", _REASON, nullable=True),
    Column("created_at", _TIMESTAMP, nullable=False),
    Index("ix_llm_calls_layer_run", "layer_run_id"),
    Index("ix_llm_calls_created", "created_at"),
    Index("ix_llm_calls_profile", "model_profile"),
    Index("ix_llm_calls_type_created", "call_type", "created_at"),
)

Table(
    "chattiness_ledger",
    _metadata,
    Column("id", _ULID, primary_key=True),
    Column("pool", _KIND, nullable=False),
    Column("channel_id", _SNOWFLAKE, nullable=True),
    Column("topic_key", _TOPIC_KEY, nullable=True),
    Column("transaction_type", _KIND, nullable=False),
    Column("amount", _REAL, nullable=False),
    Column("trigger", _REASON, nullable=True),
    Column("created_at", _TIMESTAMP, nullable=False),
    Index("ix_chattiness_ledger_pool_channel_created", "pool", "channel_id", "created_at"),
    Index("ix_chattiness_ledger_pool_topic_created", "pool", "topic_key", "created_at"),
)

Table(
    "speech_pressure",
    _metadata,
    Column("id", _ULID, primary_key=True),
    Column("amount", _REAL, nullable=False),
    Column("trigger", _REASON, nullable=True),
    Column("server_id", _SNOWFLAKE, nullable=True),
    Column("created_at", _TIMESTAMP, nullable=False),
    Index("ix_speech_pressure_created", "created_at"),
)

Table(
    "conversation_log",
    _metadata,
    Column("id", _ULID, primary_key=True),
    Column("message_id", _SNOWFLAKE, nullable=False),
    Column("channel_id", _SNOWFLAKE, nullable=False),
    Column("server_id", _SNOWFLAKE, nullable=True),
    Column("content", _BODY, nullable=False),
    Column("layer_name", _NAME, nullable=False),
    Column("trigger_type", _KIND, nullable=False),
    Column("impulse_pool", _KIND, nullable=False),
    Column("impulse_spent", _REAL, nullable=False),
    Column("priority_flagged", _FLAG, nullable=False),
    Column("created_at", _TIMESTAMP, nullable=False),
    Index("ix_conversation_log_channel_created", "channel_id", "created_at"),
)

Table(
    "draft_history",
    _metadata,
    Column("id", _ULID, primary_key=True),
    Column("channel_id", _SNOWFLAKE, nullable=False),
    Column("thread_id", _SNOWFLAKE, nullable=True),
    Column("content", _BODY, nullable=False),
    Column("layer_name", _NAME, nullable=False),
    Column("discard_reason", _REASON, nullable=True),
    Column("created_at", _TIMESTAMP, nullable=False),
    Index("ix_draft_history_channel_thread_created", "channel_id", "thread_id", "created_at"),
)
