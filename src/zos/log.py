"""Structured logging through structlog, as JSON lines or readable text on stderr.

structlog is imported only when a record passes the configured level: it costs a noticeable
part of a command's start-up, and at the default level most commands log nothing.
"""

from __future__ import annotations

import sys
from typing import Any

from zos.config import Settings

# The standard levels' numbers, so callers need not import logging (it is slow to import).
DEBUG, INFO, WARNING, ERROR = 10, 20, 30, 40

_threshold = WARNING
_as_json = False
_configured = False


def configure_logging(settings: Settings) -> None:
    """Remember the level and format; structlog itself is set up by the first record."""
    global _threshold, _as_json, _configured
    _threshold = {"DEBUG": DEBUG, "INFO": INFO, "WARNING": WARNING, "ERROR": ERROR}.get(
        settings.log_level, 50
    )
    _as_json = settings.log_json
    _configured = False


def log(level: int, event: str, **fields: Any) -> None:
    """Write one structured record when ``level`` passes the configured threshold."""
    if level < _threshold:
        return
    import structlog

    global _configured
    if not _configured:
        renderer: structlog.typing.Processor = (
            structlog.processors.JSONRenderer()
            if _as_json
            else structlog.dev.ConsoleRenderer(colors=False)
        )
        structlog.configure(
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                renderer,
            ],
            wrapper_class=structlog.make_filtering_bound_logger(_threshold),
            logger_factory=structlog.PrintLoggerFactory(sys.stderr),
            cache_logger_on_first_use=False,
        )
        _configured = True
    structlog.get_logger("zos").log(level, event, **fields)
