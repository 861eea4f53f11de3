"""The progress a migration run reports, for the caller to render. Plain data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class EventKind(StrEnum):
    WAITING = "waiting"
    STARTED = "started"
    APPLIED = "applied"
    ADOPTED = "adopted"
    SKIPPED = "skipped"  # another runner applied it first
    PROGRESS = "progress"  # a backfill batch committed; rows_done of rows_total
    BACKED_UP = "backed_up"  # description holds the backup's path
    BACKUP_ADVICE = "backup_advice"  # description holds the server's dump command
    LOCK_WAIT = "lock_wait"  # detail: what a migration waits for, or that it will try again


@dataclass(frozen=True)
class MigrationEvent:
    """Progress of a run, for the caller to render."""

    kind: EventKind
    version: int = 0
    description: str = ""
    duration_ms: int | None = None
    detail: str = ""  # for BACKED_UP, how to restore the backup
    rows_done: int | None = None
    rows_total: int | None = None


EventCallback = Callable[[MigrationEvent], None]
