"""What the version tables hold, as plain data: no database library needed to use it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from zos.errors import MigrationHistoryError


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


def applied_from_row(
    version: object,
    description: object,
    checksum: object,
    state: object,
    applied_at: object,
    duration_ms: object,
) -> AppliedMigration:
    """One ``_schema_version`` row as read by any driver, checked: the one place rows are parsed.

    ``applied_at`` may be a datetime (PostgreSQL, MariaDB) or ISO 8601 text (SQLite).

    Raises:
        MigrationHistoryError: a value no zos writes (an unknown state, a timestamp that does
            not parse, a version or duration that is not an integer), naming the version.
    """
    if not isinstance(version, int) or isinstance(version, bool):
        raise _bad_row(version, "version", version)
    try:
        parsed_state = State(str(state))
    except ValueError:
        raise _bad_row(version, "state", state, "expected applied, adopted or started") from None
    if isinstance(applied_at, str):
        try:
            applied_at = datetime.fromisoformat(applied_at)
        except ValueError:
            raise _bad_row(version, "applied_at", applied_at, "expected a UTC timestamp") from None
    if not isinstance(applied_at, datetime):
        raise _bad_row(version, "applied_at", applied_at, "expected a UTC timestamp")
    if duration_ms is not None and (not isinstance(duration_ms, int) or duration_ms < 0):
        raise _bad_row(version, "duration_ms", duration_ms, "expected milliseconds or NULL")
    return AppliedMigration(
        version, str(description), str(checksum), parsed_state, applied_at, duration_ms
    )


def _bad_row(version: object, column: str, value: object, hint: str = "") -> MigrationHistoryError:
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:59] + "…"
    return MigrationHistoryError(
        f"_schema_version row for version {version!r} has {column} {shown}"
        + (f" ({hint})" if hint else "")
        + ", which zos never writes; correct or delete that row by hand, then run the "
        "command again"
    )


@dataclass(frozen=True)
class BackfillCursor:
    """How far the batches of one backfill migration have got."""

    version: int
    last_key: Any  # decoded JSON; None before the first batch
    rows_done: int
