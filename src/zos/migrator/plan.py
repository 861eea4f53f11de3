"""Pure planning: (files found, versions recorded, target) -> what to run, or why not.

No I/O. Refuses edited, missing and out-of-order files, unfinished runs and a database ahead
of the code; a gap in the numbering is allowed (a number retired before release).
"""

from __future__ import annotations

from dataclasses import dataclass

from zos.errors import UsageError
from zos.migrator.discovery import MigrationScript
from zos.migrator.records import AppliedMigration


@dataclass(frozen=True)
class Plan:
    """What a database holds compared with the files, and what a run would apply."""

    scripts: tuple[MigrationScript, ...]
    applied: tuple[AppliedMigration, ...]
    pending: tuple[MigrationScript, ...]  # to run now, in order, up to the target
    problems: tuple[str, ...]  # anything here forbids running
    resumable: frozenset[int] = frozenset()  # interrupted backfills that pending resumes

    @property
    def current_version(self) -> int:
        """The newest version whose migration finished (an unfinished one is a problem)."""
        return max((row.version for row in self.applied if row.finished), default=0)

    @property
    def latest_version(self) -> int:
        return max((script.version for script in self.scripts), default=0)

    @property
    def gaps(self) -> tuple[tuple[int, int], ...]:
        """Numbers below the newest file that no file has (retired before release), as
        ``(first, last)`` ranges, both included and ascending: ``((2, 4), (7, 7))``.

        Computed from the files alone, so date-like numbers (``20261129_...``) cost nothing.
        """
        versions = sorted({script.version for script in self.scripts})
        return tuple(
            (low + 1, high - 1)
            for low, high in zip([0, *versions], versions, strict=False)
            if high - low > 1
        )


def build_plan(
    scripts: list[MigrationScript],
    applied: list[AppliedMigration],
    target: int | None = None,
    resumable: frozenset[int] = frozenset(),
    *,
    running: bool = False,
) -> Plan:
    """Compare ``scripts`` (ordered by version) with ``applied`` and choose what to run.

    ``resumable`` are unfinished backfills whose batches can go on where they stopped: they
    are pending, not problems. While a run is ``running``, a started migration is the one it
    is running, not a problem.

    Raises:
        UsageError: ``target`` names no migration, or lies below the current version.
    """
    by_version = {script.version: script for script in scripts}
    recorded = {row.version for row in applied}
    current = max(recorded, default=0)
    latest = max(by_version, default=0)
    resumable = frozenset(v for v in resumable if v in by_version)
    unfinished_ok = frozenset(row.version for row in applied) if running else resumable
    problems = _history_problems(by_version, applied, current, latest, unfinished_ok)

    if target is not None:
        _check_target(target, current, by_version)
    ceiling = latest if target is None else target
    pending = tuple(
        script
        for script in scripts
        if script.version in resumable
        or (script.version not in recorded and current < script.version <= ceiling)
    )
    return Plan(tuple(scripts), tuple(applied), pending, tuple(problems), resumable)


def _history_problems(
    by_version: dict[int, MigrationScript],
    applied: list[AppliedMigration],
    current: int,
    latest: int,
    resumable: frozenset[int],
) -> list[str]:
    problems: list[str] = []
    if current > latest:
        problems.append(
            f"the database is at version {current}, newer than the newest migration file "
            f"({latest}); this zos is older than the database, so upgrade zos instead"
        )
    for row in applied:
        script = by_version.get(row.version)
        if not row.finished and row.version not in resumable:
            name = script.name if script else f"version {row.version}"
            problems.append(
                f"{name} started at {row.applied_at:%Y-%m-%d %H:%M:%S} UTC and never finished; "
                "it may be partly applied. Check the schema by hand, then run "
                f"'zos db repair --applied {row.version}' if its changes are all present, or "
                f"'zos db repair --forget {row.version}' once they are all undone"
            )
        if script is None:
            if row.version <= latest:
                problems.append(
                    f"version {row.version} ({row.description}) is recorded as applied "
                    "but its migration file is missing"
                )
        elif not script.matches(row.checksum):
            problems.append(
                f"{script.name} was changed after it was applied (recorded checksum "
                f"{row.checksum[:12]}…, file now {script.checksum[:12]}…); restore the "
                "applied file and put the change in a new migration"
            )
    recorded = {row.version for row in applied}
    for version, script in sorted(by_version.items()):
        if version < current and version not in recorded:
            problems.append(
                f"{script.name} is not applied but the database is already at version "
                f"{current}; renumber it above {max(current, latest)}"
            )
    return problems


def _check_target(target: int, current: int, by_version: dict[int, MigrationScript]) -> None:
    if target < 0 or (target != 0 and target not in by_version):
        known = ", ".join(str(v) for v in sorted(by_version)) or "none"
        raise UsageError(f"--target {target} names no migration (available versions: {known})")
    if target < current:
        raise UsageError(
            f"--target {target} is below the current version {current}; migrations only go forward"
        )
