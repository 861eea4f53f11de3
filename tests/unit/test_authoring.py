"""``zos db new`` writes the next migration file correctly and never overwrites one."""

from __future__ import annotations

import os
import subprocess
import sys
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


def test_a_description_with_control_characters_is_refused(
    make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations({})
    with pytest.raises(UsageError, match="holds control characters"):
        new_migration(folder, "Red \x1b[31m text")
    assert list(folder.iterdir()) == []


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


@pytest.mark.parametrize(
    "description",
    [
        "Add topic index",
        'Say "hello" to users',
        "It's a \"mixed\" 'quote' case",
        "Back\\slash and \N{EN DASH} en dash, "
        "caf\N{LATIN SMALL LETTER E WITH ACUTE}, \u65e5\u672c, \U0001f642",
        "A long description " * 12,
        "x" * 250,
        "Names "
        + "\N{ARABIC LIGATURE UIGHUR KIRGHIZ YEH WITH HAMZA ABOVE WITH ALEF MAKSURA ISOLATED FORM}"
        * 3,
    ],
    ids=[
        "plain",
        "double-quotes",
        "both-quotes",
        "unicode",
        "long",
        "one-word",
        "long-names",
    ],
)
def test_the_skeleton_passes_ruff_check_and_format_as_written_and_keeps_the_description(
    make_migrations: MakeMigrations, description: str
) -> None:
    folder = make_migrations({})
    path = new_migration(folder, description)
    ruff = [sys.executable, "-m", "ruff"]
    isolated = ["--config", str(Path(__file__).parents[2] / "pyproject.toml")]
    checked = subprocess.run([*ruff, "check", *isolated, str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + path.read_text()
    formatted = subprocess.run(
        [*ruff, "format", "--check", "--diff", *isolated, str(path)], capture_output=True, text=True
    )
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr
    loaded, problems = load_migrations(discover_migrations(folder))
    assert problems == [] and loaded[0].description == " ".join(description.split())


def test_the_package_folder_of_an_installed_zos_is_refused_in_one_line(tmp_path: Path) -> None:
    installed = tmp_path / "venv" / "lib" / "python3.11" / "site-packages" / "zos" / "migrations"
    installed.mkdir(parents=True)
    (tmp_path / "pyproject.toml").write_text("")  # even inside a project folder
    with pytest.raises(UsageError, match=r"inside an installed package.*set migrations_dir"):
        new_migration(installed, "Add thing", checkout_only=True)
    assert list(installed.iterdir()) == []


def test_a_folder_outside_any_source_tree_is_refused_unless_set_explicitly(tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    loose.mkdir()
    with pytest.raises(UsageError, match="installed package"):
        new_migration(loose, "Add thing", checkout_only=True)
    assert new_migration(loose, "Add thing").name == "001_add_thing.py"


def test_the_package_folder_of_a_source_checkout_is_used(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("")
    folder = tmp_path / "src" / "zos" / "migrations"
    folder.mkdir(parents=True)
    assert new_migration(folder, "Add thing", checkout_only=True).parent == folder


def test_the_command_refuses_the_default_folder_of_an_installed_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed = tmp_path / "site-packages" / "zos" / "migrations"
    installed.mkdir(parents=True)
    monkeypatch.setattr("zos.migrator.DEFAULT_DIRECTORY", installed)
    result = run_cli("db", "new", "Add thing")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("Error: the migrations folder ")
    assert "set migrations_dir (ZOS_MIGRATIONS_DIR)" in result.stderr
    assert list(installed.iterdir()) == []


def test_a_folder_that_cannot_be_written_gives_one_error_line(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        folder = Path("/sys")  # root may write anywhere else; sysfs refuses new files even to root
    else:
        folder = tmp_path / "readonly"
        folder.mkdir()
        folder.chmod(0o555)
    result = run_cli("db", "new", "Add thing", env={"ZOS_MIGRATIONS_DIR": str(folder)})
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"Error: cannot write {folder / '001_add_thing.py'}: ")
    assert "Traceback" not in result.stderr
