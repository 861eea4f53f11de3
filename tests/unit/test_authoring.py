"""``zos db new`` writes the next migration file correctly and never overwrites one."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import MakeMigrations, migration, run_cli
from zos.errors import UsageError
from zos.migrator import authoring
from zos.migrator.authoring import new_migration, slugify
from zos.migrator.discovery import discover_migrations, load_migrations


@pytest.mark.parametrize(
    ("description", "slug"),
    [
        ("Add topic index", "add_topic_index"),
        ("  Make messages.content NULLABLE!  ", "make_messages_content_nullable"),
        ("Émoji → 2 columns", "moji_2_columns"),
        ("x" * 100, "x" * 60),
    ],
)
def test_the_slug_is_lower_case_words_joined_by_underscores(description: str, slug: str) -> None:
    assert slugify(description) == slug


def test_the_new_file_is_numbered_one_above_the_newest_even_across_a_gap(
    make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations({"001_a.py": migration(1, "A"), "004_d.py": migration(4, "D")})
    path = new_migration(folder, "Add topic index")
    assert path == folder / "005_add_topic_index.py"


def test_the_new_file_is_a_valid_migration_that_refuses_to_run_until_written(
    make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations({})
    path = new_migration(folder, 'Say "hello" to\tusers')
    loaded, problems = load_migrations(discover_migrations(folder))
    assert problems == []
    assert (loaded[0].script.path, loaded[0].description) == (path, 'Say "hello" to users')
    with pytest.raises(NotImplementedError):
        loaded[0].upgrade(None)  # type: ignore[arg-type]


def test_a_description_without_letters_or_digits_is_refused(
    make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations({})
    with pytest.raises(UsageError, match="no letters or digits"):
        new_migration(folder, " --- !!! ")
    assert list(folder.iterdir()) == []


def test_a_file_that_appeared_meanwhile_is_never_overwritten(
    make_migrations: MakeMigrations, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = make_migrations({})
    taken = folder / "001_add_thing.py"
    taken.write_text("# someone else's work\n")
    # Another `zos db new` wrote the file after this one listed the folder.
    monkeypatch.setattr(authoring, "find_migrations", lambda _directory: ([], []))
    with pytest.raises(UsageError, match="exists already; it was not overwritten"):
        new_migration(folder, "Add thing")
    assert taken.read_text() == "# someone else's work\n"


def test_the_command_prints_the_path_of_the_new_file(make_migrations: MakeMigrations) -> None:
    folder = make_migrations({"001_a.py": migration(1, "A")})
    result = run_cli("db", "new", "Add topic index", env={"ZOS_MIGRATIONS_DIR": str(folder)})
    assert result.exit_code == 0
    assert result.stdout == f"{folder / '002_add_topic_index.py'}\n"
    assert Path(result.stdout.strip()).is_file()


def test_the_command_refuses_an_empty_slug_with_exit_2(make_migrations: MakeMigrations) -> None:
    folder = make_migrations({})
    result = run_cli("db", "new", "???", env={"ZOS_MIGRATIONS_DIR": str(folder)})
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: description '???' has no letters or digits")
