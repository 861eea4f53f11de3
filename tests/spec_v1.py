"""What ``spec/data-model.md`` says of schema version 1, written out once for the tests."""

from __future__ import annotations

# The 18 tables, in creation order.
TABLES: list[str] = [
    "servers",
    "users",
    "user_server_tracking",
    "channels",
    "messages",
    "reactions",
    "poll_state",
    "media_analysis",
    "link_analysis",
    "topics",
    "salience_ledger",
    "layer_runs",
    "insights",
    "llm_calls",
    "chattiness_ledger",
    "speech_pressure",
    "conversation_log",
    "draft_history",
]

# The 10 foreign keys: (from table.column, to table.column).
FOREIGN_KEYS: set[tuple[str, str]] = {
    ("channels.server_id", "servers.id"),
    ("messages.channel_id", "channels.id"),
    ("messages.server_id", "servers.id"),
    ("reactions.message_id", "messages.id"),
    ("media_analysis.message_id", "messages.id"),
    ("link_analysis.message_id", "messages.id"),
    ("salience_ledger.topic_key", "topics.key"),
    ("insights.topic_key", "topics.key"),
    ("insights.layer_run_id", "layer_runs.id"),
    ("llm_calls.layer_run_id", "layer_runs.id"),
}

# The 30 named indexes: name -> (table, columns, unique).
INDEXES: dict[str, tuple[str, tuple[str, ...], bool]] = {
    "pk_user_server_tracking": ("user_server_tracking", ("user_id", "server_id"), True),
    "ix_user_server_tracking_user": ("user_server_tracking", ("user_id",), False),
    "ix_messages_channel_created": ("messages", ("channel_id", "created_at"), False),
    "ix_messages_author_created": ("messages", ("author_id", "created_at"), False),
    "ix_messages_server_created": ("messages", ("server_id", "created_at"), False),
    "ix_reactions_message": ("reactions", ("message_id",), False),
    "ix_reactions_user_created": ("reactions", ("user_id", "created_at"), False),
    "ix_reactions_emoji_server": ("reactions", ("emoji", "server_id"), False),
    "ix_media_analysis_message": ("media_analysis", ("message_id",), False),
    "ix_link_analysis_message": ("link_analysis", ("message_id",), False),
    "ix_link_analysis_domain_created": ("link_analysis", ("domain", "fetched_at"), False),
    "ix_topics_category": ("topics", ("category",), False),
    "ix_topics_global": ("topics", ("is_global",), False),
    "ix_topics_provisional": ("topics", ("provisional",), False),
    "ix_salience_ledger_topic_created": ("salience_ledger", ("topic_key", "created_at"), False),
    "ix_layer_runs_name_started": ("layer_runs", ("layer_name", "started_at"), False),
    "ix_layer_runs_status": ("layer_runs", ("status",), False),
    "ix_insights_topic_created": ("insights", ("topic_key", "created_at"), False),
    "ix_insights_category_created": ("insights", ("category", "created_at"), False),
    "ix_insights_quarantined": ("insights", ("quarantined",), False),
    "ix_insights_layer_run": ("insights", ("layer_run_id",), False),
    "ix_llm_calls_layer_run": ("llm_calls", ("layer_run_id",), False),
    "ix_llm_calls_created": ("llm_calls", ("created_at",), False),
    "ix_llm_calls_profile": ("llm_calls", ("model_profile",), False),
    "ix_llm_calls_type_created": ("llm_calls", ("call_type", "created_at"), False),
    "ix_chattiness_ledger_pool_channel_created": (
        "chattiness_ledger",
        ("pool", "channel_id", "created_at"),
        False,
    ),
    "ix_chattiness_ledger_pool_topic_created": (
        "chattiness_ledger",
        ("pool", "topic_key", "created_at"),
        False,
    ),
    "ix_speech_pressure_created": ("speech_pressure", ("created_at",), False),
    "ix_conversation_log_channel_created": (
        "conversation_log",
        ("channel_id", "created_at"),
        False,
    ),
    "ix_draft_history_channel_thread_created": (
        "draft_history",
        ("channel_id", "thread_id", "created_at"),
        False,
    ),
}
