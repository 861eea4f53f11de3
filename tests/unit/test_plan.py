"""Planning compares files with the recorded history and refuses anything that does not fit."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from zos.errors import UsageError
from zos.migrator.discovery import MigrationScript
from zos.migrator.plan import build_plan
from zos.migrator.recorder import AppliedMigration, State


def script(version: int, checksum: str | None = None) -> MigrationScript:
    return MigrationScript(
        version, Path(f"{version:03d}_m{version}.py"), checksum or f"sum{version}"
    )


def row(
    version: int, checksum: str | None = None, state: State = State.APPLIED
) -> AppliedMigration:
    return AppliedMigration(
        version, f"m{version}", checksum or f"sum{version}", state, datetime(2026, 1, 2, 3, 4, 5), 1
    )


def versions(scripts: tuple[MigrationScript, ...]) -> list[int]:
    return [s.version for s in scripts]


def test_a_fresh_database_is_at_version_0_with_everything_pending() -> None:
    plan = build_plan([script(1), script(2), script(3)], [])
    assert (plan.current_version, plan.latest_version) == (0, 3)
    assert versions(plan.pending) == [1, 2, 3]
    assert plan.problems == ()


def test_an_up_to_date_database_has_nothing_pending() -> None:
    plan = build_plan([script(1), script(2)], [row(1), row(2)])
    assert plan.pending == () and plan.problems == ()
    assert plan.current_version == 2


def test_an_edited_applied_migration_is_a_problem() -> None:
    plan = build_plan([script(1, "new"), script(2)], [row(1, "old")])
    assert len(plan.problems) == 1
    assert "001_m1.py was changed after it was applied" in plan.problems[0]


def test_an_applied_migration_whose_file_is_gone_is_a_problem() -> None:
    plan = build_plan([script(1), script(3)], [row(1), row(2), row(3)])
    assert plan.problems == (
        "version 2 (m2) is recorded as applied but its migration file is missing",
    )


def test_a_database_newer_than_the_code_is_a_problem() -> None:
    plan = build_plan([script(1), script(2)], [row(1), row(2), row(3)])
    assert len(plan.problems) == 1
    assert "at version 3, newer than the newest migration file (2)" in plan.problems[0]


def test_an_unapplied_migration_below_the_head_is_out_of_order() -> None:
    plan = build_plan([script(1), script(2), script(3), script(4)], [row(1), row(3)])
    assert len(plan.problems) == 1
    assert "002_m2.py is not applied but the database is already at version 3" in plan.problems[0]
    assert versions(plan.pending) == [4]


def test_a_gap_in_the_numbering_is_allowed_and_shown() -> None:
    plan = build_plan([script(1), script(2), script(5)], [row(1)])
    assert plan.problems == ()
    assert plan.gaps == ((3, 4),)
    assert versions(plan.pending) == [2, 5]


@pytest.mark.parametrize(
    ("numbers", "gaps"),
    [
        ([1, 2, 3], ()),
        ([2, 3, 7, 9], ((1, 1), (4, 6), (8, 8))),
        ([1, 20261129, 20261130], ((2, 20261128),)),
        ([1, 2_147_483_647], ((2, 2_147_483_646),)),
        ([], ()),
    ],
)
def test_gaps_are_ranges_computed_from_the_files_alone(
    numbers: list[int], gaps: tuple[tuple[int, int], ...]
) -> None:
    assert build_plan([script(n) for n in numbers], []).gaps == gaps


def test_a_record_in_the_legacy_checksum_form_still_matches_its_file() -> None:
    legacy = MigrationScript(1, Path("001_m1.py"), "canonical", "One", "bytes")
    assert build_plan([legacy], [row(1, "bytes")]).problems == ()
    assert build_plan([legacy], [row(1, "canonical")]).problems == ()
    assert len(build_plan([legacy], [row(1, "other")]).problems) == 1


def test_an_unfinished_migration_is_a_problem_naming_the_repair() -> None:
    plan = build_plan([script(1), script(2)], [row(1), row(2, state=State.STARTED)])
    assert len(plan.problems) == 1
    assert "002_m2.py started at 2026-01-02 03:04:05 UTC and never finished" in plan.problems[0]
    assert "zos db repair" in plan.problems[0]


def test_every_history_problem_is_reported_at_once() -> None:
    plan = build_plan([script(1, "edited"), script(3), script(4)], [row(1), row(2), row(4)])
    assert len(plan.problems) == 3


@pytest.mark.parametrize(
    ("target", "applied", "pending"),
    [(2, [], [1, 2]), (0, [], []), (3, [1], [2, 3]), (1, [1], [])],
)
def test_a_target_stops_the_plan_at_that_version(
    target: int, applied: list[int], pending: list[int]
) -> None:
    plan = build_plan(
        [script(1), script(2), script(3), script(4)], [row(v) for v in applied], target
    )
    assert versions(plan.pending) == pending


def test_a_target_that_names_no_migration_is_refused() -> None:
    with pytest.raises(
        UsageError, match=r"--target 3 names no migration \(available versions: 1, 2, 5\)"
    ):
        build_plan([script(1), script(2), script(5)], [], target=3)


def test_a_target_below_the_current_version_is_refused() -> None:
    with pytest.raises(UsageError, match="below the current version 2; migrations only go forward"):
        build_plan([script(1), script(2)], [row(1), row(2)], target=1)
