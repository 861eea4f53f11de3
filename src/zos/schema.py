"""The current database schema: one MetaData holding every zos table, per spec/data-model.md.

Imports SQLAlchemy only; migrations must never import this module.
"""

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects import mysql

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# MySQL/MariaDB need a length on every VARCHAR; utf8mb4 indexes allow 768 characters per key.
Snowflake = String(32)
Ulid = String(26)
TopicKey = String(255)
Name = String(255)
Kind = String(64)
Reason = String(255)
Url = String(2048)
Title = String(512)
# MySQL TEXT stops at 64 KiB; LLM prompts and responses routinely exceed even MEDIUMTEXT.
Body = Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
LargeBody = Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
# MySQL FLOAT is single precision, too coarse for ledger amounts and costs.
Real: Double[float] = Double()
# MySQL DATETIME drops fractional seconds, so rows written in one second would lose their order.
Timestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
Flag = Boolean(create_constraint=False)
Document = JSON()


def utcnow() -> datetime:
    """Return the current UTC time as a naive datetime, the form every timestamp is stored in."""
    return datetime.now(UTC).replace(tzinfo=None)


servers = Table(
    "servers",
    metadata,
    Column("id", Snowflake, primary_key=True),
    Column("name", Name, nullable=True),
    Column("privacy_gate_role", Snowflake, nullable=True),
    Column("disabled_layers", Document, nullable=True),
    Column("threads_as_topics", Flag, nullable=False, default=True),
    Column("chattiness_config", Document, nullable=True),
    Column("created_at", Timestamp, nullable=False, default=utcnow),
)

users = Table(
    "users",
    metadata,
    Column("id", Snowflake, primary_key=True),
    Column("first_dm_acknowledged", Flag, nullable=False, default=False),
    Column("first_dm_at", Timestamp, nullable=True),
)

# Version 1 declares no primary key here; the unique index keeps the name it always had.
user_server_tracking = Table(
    "user_server_tracking",
    metadata,
    Column("user_id", Snowflake, nullable=False),
    Column("server_id", Snowflake, nullable=False),
    Column("first_seen_at", Timestamp, nullable=False, default=utcnow),
    Index("pk_user_server_tracking", "user_id", "server_id", unique=True),
    Index("ix_user_server_tracking_user", "user_id"),
)

channels = Table(
    "channels",
    metadata,
    Column("id", Snowflake, primary_key=True),
    Column("server_id", Snowflake, ForeignKey("servers.id"), nullable=False),
    Column("name", Name, nullable=True),
    Column("type", Kind, nullable=False),
    Column("parent_id", Snowflake, nullable=True),
    Column("created_at", Timestamp, nullable=False, default=utcnow),
)

messages = Table(
    "messages",
    metadata,
    Column("id", Snowflake, primary_key=True),
    Column("channel_id", Snowflake, ForeignKey("channels.id"), nullable=False),
    Column("server_id", Snowflake, ForeignKey("servers.id"), nullable=True),
    Column("author_id", Snowflake, nullable=False),
    Column("content", Body, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("visibility_scope", Kind, nullable=False),
    Column("reactions_aggregate", Document, nullable=True),
    Column("reply_to_id", Snowflake, nullable=True),
    Column("thread_id", Snowflake, nullable=True),
    Column("has_media", Flag, nullable=False, default=False),
    Column("has_links", Flag, nullable=False, default=False),
    Column("ingested_at", Timestamp, nullable=False, default=utcnow),
    Column("deleted_at", Timestamp, nullable=True),
    Index("ix_messages_channel_created", "channel_id", "created_at"),
    Index("ix_messages_author_created", "author_id", "created_at"),
    Index("ix_messages_server_created", "server_id", "created_at"),
)

reactions = Table(
    "reactions",
    metadata,
    Column("id", Ulid, primary_key=True),
    Column("message_id", Snowflake, ForeignKey("messages.id"), nullable=False),
    Column("user_id", Snowflake, nullable=False),
    Column("emoji", Name, nullable=False),
    Column("is_custom", Flag, nullable=False),
    Column("server_id", Snowflake, nullable=True),
    Column("created_at", Timestamp, nullable=False, default=utcnow),
    Column("removed_at", Timestamp, nullable=True),
    Index("ix_reactions_message", "message_id"),
    Index("ix_reactions_user_created", "user_id", "created_at"),
    Index("ix_reactions_emoji_server", "emoji", "server_id"),
)

poll_state = Table(
    "poll_state",
    metadata,
    Column("channel_id", Snowflake, primary_key=True),
    Column("last_message_at", Timestamp, nullable=True),
    Column("last_polled_at", Timestamp, nullable=False),
)

media_analysis = Table(
    "media_analysis",
    metadata,
    Column("id", Ulid, primary_key=True),
    Column("message_id", Snowflake, ForeignKey("messages.id"), nullable=False),
    Column("media_type", Kind, nullable=False),
    Column("url", Url, nullable=False),
    Column("filename", Name, nullable=True),
    Column("width", Integer, nullable=True),
    Column("height", Integer, nullable=True),
    Column("duration_seconds", Integer, nullable=True),
    Column("description", Body, nullable=False),
    Column("analyzed_at", Timestamp, nullable=False, default=utcnow),
    Column("analysis_model", Name, nullable=True),
    Index("ix_media_analysis_message", "message_id"),
)

link_analysis = Table(
    "link_analysis",
    metadata,
    Column("id", Ulid, primary_key=True),
    Column("message_id", Snowflake, ForeignKey("messages.id"), nullable=False),
    Column("url", Body, nullable=False),
    Column("domain", Name, nullable=False),
    Column("content_type", Kind, nullable=False),
    Column("title", Title, nullable=True),
    Column("summary", Body, nullable=True),
    Column("is_youtube", Flag, nullable=False, default=False),
    Column("duration_seconds", Integer, nullable=True),
    Column("transcript_available", Flag, nullable=True),
    Column("fetched_at", Timestamp, nullable=True),
    Column("fetch_failed", Flag, nullable=False, default=False),
    Column("fetch_error", Reason, nullable=True),
    Index("ix_link_analysis_message", "message_id"),
    # The name says "created" but the table has no created_at; version 1 indexes fetched_at.
    Index("ix_link_analysis_domain_created", "domain", "fetched_at"),
)

topics = Table(
    "topics",
    metadata,
    Column("key", TopicKey, primary_key=True),
    Column("category", Kind, nullable=False),
    Column("is_global", Flag, nullable=False),
    Column("provisional", Flag, nullable=False, default=False),
    Column("created_at", Timestamp, nullable=False, default=utcnow),
    Column("last_activity_at", Timestamp, nullable=True),
    Column("metadata", Document, nullable=True),
    Index("ix_topics_category", "category"),
    Index("ix_topics_global", "is_global"),
    Index("ix_topics_provisional", "provisional"),
)

salience_ledger = Table(
    "salience_ledger",
    metadata,
    Column("id", Ulid, primary_key=True),
    Column("topic_key", TopicKey, ForeignKey("topics.key"), nullable=False),
    Column("transaction_type", Kind, nullable=False),
    Column("amount", Real, nullable=False),
    Column("reason", Reason, nullable=True),
    Column("source_topic", TopicKey, nullable=True),
    Column("created_at", Timestamp, nullable=False, default=utcnow),
    Index("ix_salience_ledger_topic_created", "topic_key", "created_at"),
)

layer_runs = Table(
    "layer_runs",
    metadata,
    Column("id", Ulid, primary_key=True),
    Column("layer_name", Name, nullable=False),
    Column("layer_hash", Name, nullable=False),
    Column("started_at", Timestamp, nullable=False),
    Column("completed_at", Timestamp, nullable=True),
    Column("status", Kind, nullable=False),
    Column("targets_matched", Integer, nullable=False, default=0),
    Column("targets_processed", Integer, nullable=False, default=0),
    Column("targets_skipped", Integer, nullable=False, default=0),
    Column("insights_created", Integer, nullable=False, default=0),
    Column("model_profile", Name, nullable=True),
    Column("model_provider", Name, nullable=True),
    Column("model_name", Name, nullable=True),
    Column("tokens_input", Integer, nullable=True),
    Column("tokens_output", Integer, nullable=True),
    Column("tokens_total", Integer, nullable=True),
    Column("estimated_cost_usd", Real, nullable=True),
    Column("errors", Document, nullable=True),
    Index("ix_layer_runs_name_started", "layer_name", "started_at"),
    Index("ix_layer_runs_status", "status"),
)

insights = Table(
    "insights",
    metadata,
    Column("id", Ulid, primary_key=True),
    Column("topic_key", TopicKey, ForeignKey("topics.key"), nullable=False),
    Column("category", Kind, nullable=False),
    Column("content", Body, nullable=False),
    Column("sources_scope_max", Kind, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("layer_run_id", Ulid, ForeignKey("layer_runs.id"), nullable=False),
    Column("supersedes", Ulid, nullable=True),
    Column("quarantined", Flag, nullable=False, default=False),
    Column("salience_spent", Real, nullable=False),
    Column("strength_adjustment", Real, nullable=False),
    Column("strength", Real, nullable=False),
    Column("original_topic_salience", Real, nullable=False),
    Column("confidence", Real, nullable=False),
    Column("importance", Real, nullable=False),
    Column("novelty", Real, nullable=False),
    Column("valence_joy", Real, nullable=True),
    Column("valence_concern", Real, nullable=True),
    Column("valence_curiosity", Real, nullable=True),
    Column("valence_warmth", Real, nullable=True),
    Column("valence_tension", Real, nullable=True),
    Column("context_channel", TopicKey, nullable=True),
    Column("context_thread", TopicKey, nullable=True),
    Column("subject", TopicKey, nullable=True),
    Column("participants", Document, nullable=True),
    Column("conflicts_with", Document, nullable=True),
    Column("conflict_resolved", Flag, nullable=True),
    Column("synthesis_source_ids", Document, nullable=True),
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

llm_calls = Table(
    "llm_calls",
    metadata,
    Column("id", Ulid, primary_key=True),
    Column("layer_run_id", Ulid, ForeignKey("layer_runs.id"), nullable=True),
    Column("topic_key", TopicKey, nullable=True),
    Column("call_type", Kind, nullable=False),
    Column("model_profile", Name, nullable=False),
    Column("model_provider", Name, nullable=False),
    Column("model_name", Name, nullable=False),
    Column("prompt", LargeBody, nullable=False),
    Column("response", LargeBody, nullable=False),
    Column("tokens_input", Integer, nullable=False),
    Column("tokens_output", Integer, nullable=False),
    Column("tokens_total", Integer, nullable=False),
    Column("estimated_cost_usd", Real, nullable=True),
    Column("latency_ms", Integer, nullable=True),
    Column("success", Flag, nullable=False, default=True),
    Column("error_message", Reason, nullable=True),
    Column("created_at", Timestamp, nullable=False, default=utcnow),
    Index("ix_llm_calls_layer_run", "layer_run_id"),
    Index("ix_llm_calls_created", "created_at"),
    Index("ix_llm_calls_profile", "model_profile"),
    Index("ix_llm_calls_type_created", "call_type", "created_at"),
)

chattiness_ledger = Table(
    "chattiness_ledger",
    metadata,
    Column("id", Ulid, primary_key=True),
    Column("pool", Kind, nullable=False),
    Column("channel_id", Snowflake, nullable=True),
    Column("topic_key", TopicKey, nullable=True),
    Column("transaction_type", Kind, nullable=False),
    Column("amount", Real, nullable=False),
    Column("trigger", Reason, nullable=True),
    Column("created_at", Timestamp, nullable=False, default=utcnow),
    Index("ix_chattiness_ledger_pool_channel_created", "pool", "channel_id", "created_at"),
    Index("ix_chattiness_ledger_pool_topic_created", "pool", "topic_key", "created_at"),
)

speech_pressure = Table(
    "speech_pressure",
    metadata,
    Column("id", Ulid, primary_key=True),
    Column("amount", Real, nullable=False),
    Column("trigger", Reason, nullable=True),
    Column("server_id", Snowflake, nullable=True),
    Column("created_at", Timestamp, nullable=False, default=utcnow),
    Index("ix_speech_pressure_created", "created_at"),
)

conversation_log = Table(
    "conversation_log",
    metadata,
    Column("id", Ulid, primary_key=True),
    Column("message_id", Snowflake, nullable=False),
    Column("channel_id", Snowflake, nullable=False),
    Column("server_id", Snowflake, nullable=True),
    Column("content", Body, nullable=False),
    Column("layer_name", Name, nullable=False),
    Column("trigger_type", Kind, nullable=False),
    Column("impulse_pool", Kind, nullable=False),
    Column("impulse_spent", Real, nullable=False),
    Column("priority_flagged", Flag, nullable=False, default=False),
    Column("created_at", Timestamp, nullable=False, default=utcnow),
    Index("ix_conversation_log_channel_created", "channel_id", "created_at"),
)

draft_history = Table(
    "draft_history",
    metadata,
    Column("id", Ulid, primary_key=True),
    Column("channel_id", Snowflake, nullable=False),
    Column("thread_id", Snowflake, nullable=True),
    Column("content", Body, nullable=False),
    Column("layer_name", Name, nullable=False),
    Column("discard_reason", Reason, nullable=True),
    Column("created_at", Timestamp, nullable=False, default=utcnow),
    Index("ix_draft_history_channel_thread_created", "channel_id", "thread_id", "created_at"),
)
