"""Discovery finds, names and hashes migration files and imports only what it must."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, MakeMigrations, migration
from zos.errors import MigrationFileError
from zos.migrator.discovery import discover_migrations, find_migrations, load_migrations


def test_files_are_listed_in_version_order_with_the_sha256_of_their_bytes(
    make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations(
        {"010_later.py": migration(10, "Later"), "002_early.py": migration(2, "Early")}
    )
    scripts = discover_migrations(folder)
    assert [s.version for s in scripts] == [2, 10]
    assert scripts[0].checksum == hashlib.sha256((folder / "002_early.py").read_bytes()).hexdigest()


def test_a_crlf_checkout_of_the_same_file_keeps_its_checksum(
    make_migrations: MakeMigrations,
) -> None:
    body = migration(1, "One")
    unix = make_migrations({"001_one.py": body})
    windows = make_migrations({})
    (windows / "001_one.py").write_bytes(body.replace("\n", "\r\n").encode())
    assert discover_migrations(unix)[0].checksum == discover_migrations(windows)[0].checksum


def test_private_helpers_and_non_python_files_are_not_migrations(
    make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations(
        {"001_one.py": migration(1, "One"), "__init__.py": "", "_shared.py": "", "README.md": ""}
    )
    assert [s.name for s in discover_migrations(folder)] == ["001_one.py"]


def test_listing_imports_nothing_so_a_broken_file_costs_nothing_until_it_must_run(
    make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations({"001_boom.py": "raise SystemExit('imported!')\n"})
    assert [s.version for s in discover_migrations(folder)] == [1]


def test_two_files_with_one_version_are_refused_naming_both() -> None:
    with pytest.raises(MigrationFileError, match=r"002_a\.py and 002_b\.py share version 2"):
        discover_migrations(FIXTURES / "duplicate_version")


def test_a_misnamed_python_file_is_refused() -> None:
    with pytest.raises(MigrationFileError, match=r"2_add_thing\.py: not a migration file name"):
        discover_migrations(FIXTURES / "misnamed")


def test_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MigrationFileError, match="does not exist"):
        discover_migrations(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        ("missing_version", r"001_initial\.py: does not define VERSION$"),
        ("missing_description", r"001_initial\.py: does not define DESCRIPTION$"),
        ("missing_upgrade", r"001_initial\.py: does not define upgrade\(\)$"),
        ("version_mismatch", r"002_second\.py: VERSION is 3 but the file name says 2$"),
        ("syntax_error", r"001_initial\.py: syntax error at line 4: "),
        ("import_error", r"001_initial\.py: fails to import: ModuleNotFoundError: "),
    ],
)
def test_an_incomplete_or_broken_file_is_reported_by_name(scenario: str, expected: str) -> None:
    scripts = discover_migrations(FIXTURES / scenario)
    loaded, problems = load_migrations(scripts)
    assert len(problems) == 1
    assert any(__import__("re").search(expected, p) for p in problems), problems
    assert len(loaded) == len(scripts) - 1


def test_every_problem_is_reported_not_only_the_first() -> None:
    scripts, listing_problems = find_migrations(FIXTURES / "many_problems")
    _, load_problems = load_migrations(scripts)
    problems = listing_problems + load_problems
    assert len(problems) == 3, problems
    assert any("share version 3" in p for p in problems)
    assert any(p.startswith("001_first.py: does not define DESCRIPTION") for p in problems)
    assert any(p.startswith("002_second.py: syntax error") for p in problems)


def test_a_loaded_migration_carries_its_description_and_transaction_mode(
    make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations(
        {
            "001_one.py": migration(1, "  One  "),
            "002_two.py": migration(2, "Two") + "\nTRANSACTIONAL = False\n",
        }
    )
    loaded, problems = load_migrations(discover_migrations(folder))
    assert problems == []
    assert [(m.description, m.transactional) for m in loaded] == [("One", True), ("Two", False)]


def test_descriptions_are_read_without_importing_the_files(
    make_migrations: MakeMigrations,
) -> None:
    from zos.migrator.discovery import describe_migrations

    folder = make_migrations(
        {
            "001_boom.py": "raise SystemExit('imported!')\nDESCRIPTION = 'Explodes  on\\timport'\n",
            "002_broken.py": "DESCRIPTION = (\n",
            "003_computed.py": "DESCRIPTION = 'x'.upper()\n",
        }
    )
    descriptions, problems = describe_migrations(discover_migrations(folder))
    assert descriptions == {1: "Explodes on import"}
    assert [p.split(":")[0] for p in problems] == ["002_broken.py", "003_computed.py"]
