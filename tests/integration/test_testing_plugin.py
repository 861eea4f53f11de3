"""The opt-in pytest plugin: one line in a project's conftest.py turns the checks of
``zos db verify`` into tests of that project's migrations, failing on a planted mistake."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REAL_MIGRATIONS

BLANKING = """from sqlalchemy import text

VERSION = 2
DESCRIPTION = "Tidy server names"


def upgrade(conn):
    conn.execute(text("UPDATE servers SET name = ''"))
"""


def run_pytest(project: Path, migration: str | None) -> subprocess.CompletedProcess[str]:
    folder = project / "migrations"
    folder.mkdir(parents=True)
    (folder / "001_initial.py").write_text((REAL_MIGRATIONS / "001_initial.py").read_text())
    if migration is not None:
        (folder / "002_tidy.py").write_text(migration)
    (project / "conftest.py").write_text('pytest_plugins = ["zos.testing.verify"]\n')
    (project / "pytest.ini").write_text("[pytest]\nzos_migrations_dir = migrations\n")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "-v"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_one_line_in_conftest_checks_a_projects_migrations(tmp_path: Path) -> None:
    result = run_pytest(tmp_path / "good", None)
    assert result.returncode == 0, result.stdout
    assert "conftest.py::zos_verify[sqlite-data_kept-001] PASSED" in result.stdout
    assert "conftest.py::zos_verify[files-static] PASSED" in result.stdout


def test_the_plugin_fails_the_migration_that_blanks_a_column(tmp_path: Path) -> None:
    result = run_pytest(tmp_path / "bad", BLANKING)
    assert result.returncode == 1
    assert "conftest.py::zos_verify[sqlite-data_kept-001] FAILED" in result.stdout
    assert "002_tidy.py: table servers, column name: 3 of 3 values changed, e.g. id='0-id'" in (
        result.stdout
    )


def test_without_the_line_no_check_is_collected(tmp_path: Path) -> None:
    project = tmp_path / "off"
    project.mkdir()
    (project / "conftest.py").write_text("")
    (project / "test_nothing.py").write_text("def test_nothing():\n    pass\n")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "-q"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0 and "1 passed" in result.stdout
