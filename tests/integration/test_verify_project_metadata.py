"""A project with a schema of its own points ``zos db verify`` (``--metadata``) and the pytest
plugin (``zos_metadata``) at its metadata, instead of zos's ``zos.database.metadata``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import migration, run_zos

SHOP_001 = migration(
    1,
    "Create items",
    'conn.execute(text("CREATE TABLE items (id INTEGER NOT NULL PRIMARY KEY, '
    'name VARCHAR(40) NOT NULL)"))',
)
SHOP_002 = migration(
    2, "Add price", 'conn.execute(text("ALTER TABLE items ADD COLUMN price INTEGER"))'
)
SCHEMA = """from sqlalchemy import Column, Integer, MetaData, String, Table

metadata = MetaData()
Table(
    "items",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(40), nullable=False),
{price}
)
"""
WITH_PRICE = '    Column("price", Integer),'


def shop(root: Path, *, price_in_schema: bool = True) -> Path:
    """A project whose own package ``shop`` holds its schema; not zos's tables."""
    (root / "shop").mkdir(parents=True)
    (root / "shop" / "__init__.py").write_text("")
    (root / "shop" / "schema.py").write_text(
        SCHEMA.format(price=WITH_PRICE if price_in_schema else "")
    )
    (root / "migs").mkdir()
    (root / "migs" / "001_items.py").write_text(SHOP_001)
    (root / "migs" / "002_price.py").write_text(SHOP_002)
    return root


def run_plugin(project: Path, ini: str) -> subprocess.CompletedProcess[str]:
    (project / "conftest.py").write_text('pytest_plugins = ["zos.testing.verify"]\n')
    (project / "pytest.ini").write_text(f"[pytest]\nzos_migrations_dir = migs\n{ini}")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "-v"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_plugin_compares_the_newest_schema_with_the_projects_metadata(tmp_path: Path) -> None:
    result = run_plugin(shop(tmp_path / "p"), "zos_metadata = shop.schema:metadata\n")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "conftest.py::zos_verify[sqlite-step-by-step_equals_all_at_once] PASSED" in (
        result.stdout
    )


def test_the_plugin_names_a_column_the_projects_metadata_has_but_the_migrations_do_not_make(
    tmp_path: Path,
) -> None:
    # The schema has no price: the migrations' result differs from the project's metadata.
    project = shop(tmp_path / "p", price_in_schema=False)
    result = run_plugin(project, "zos_metadata = shop.schema:metadata\n")
    assert result.returncode == 1, result.stdout[-3000:]
    assert "zos_verify[sqlite-step-by-step_equals_all_at_once] FAILED" in result.stdout
    assert "items" in result.stdout and "price" in result.stdout
    assert "channels" not in result.stdout  # zos's own schema is not the one compared


def test_the_plugin_refuses_a_zos_metadata_that_names_no_metadata(tmp_path: Path) -> None:
    result = run_plugin(shop(tmp_path / "p"), "zos_metadata = shop.schema:nothing\n")
    assert result.returncode not in (0, 5), result.stdout[-3000:]
    assert "zos_metadata: metadata 'shop.schema:nothing': shop.schema has no attribute" in (
        result.stdout
    )
    assert "PASSED" not in result.stdout and "SKIPPED" not in result.stdout


def cli_env(project: Path) -> dict[str, str]:
    return {
        **os.environ,
        "ZOS_DATA_DIR": str(project / "data"),
        "ZOS_MIGRATIONS_DIR": str(project / "migs"),
    }


def test_verify_with_metadata_compares_with_the_projects_schema(tmp_path: Path) -> None:
    project = shop(tmp_path / "p")
    good = run_zos(
        "db", "verify", "--metadata", "shop.schema:metadata", env=cli_env(project), cwd=project
    )
    assert good.returncode == 0, (good.stdout, good.stderr)
    assert "Every check passed" in good.stdout
    without = run_zos("db", "verify", env=cli_env(project), cwd=project, timeout=120)
    assert without.returncode == 1
    assert "table channels is missing" in without.stdout


def test_verify_with_metadata_that_cannot_be_imported_is_one_error_line(tmp_path: Path) -> None:
    project = shop(tmp_path / "p")
    for reference, said in [
        ("shop.nowhere:metadata", "cannot import shop.nowhere: ModuleNotFoundError"),
        ("shop.schema:__name__", "is a str, not a sqlalchemy MetaData"),
        ("shop.schema", "must be package.module:attribute"),
    ]:
        result = run_zos("db", "verify", "--metadata", reference, env=cli_env(project), cwd=project)
        assert result.returncode == 2, (reference, result.stderr)
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(f"Error: metadata {reference!r}: {said}"), lines[0]
