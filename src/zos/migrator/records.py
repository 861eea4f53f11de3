"""What the version tables hold, as plain data: no database library needed to use it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class State(StrEnum):
    """How a version row came to be."""

    APPLIED = "applied"  # upgrade() ran and finished
    ADOPTED = "adopted"  # check() found the change already present; upgrade() did not run
    STARTED = "started"  # upgrade() began outside a transaction and has not been seen to finish


@dataclass(frozen=True)
class AppliedMigration:
    """One row of ``_schema_version``."""

    version: int
    description: str
    checksum: str
    state: State
    applied_at: datetime  # naive, UTC
    duration_ms: int | None

    @property
    def finished(self) -> bool:
        return self.state != State.STARTED


@dataclass(frozen=True)
class BackfillCursor:
    """How far the batches of one backfill migration have got."""

    version: int
    last_key: Any  # decoded JSON; None before the first batch
    rows_done: int
