"""A developer who adds a 002 exactly as the README's "Writing a migration" shows keeps the
project's own suite green: the tests that read the schema or the migrations folder run against
a copy of the project with that 002 in it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.readme_example import EXAMPLE_FILE, with_readme_migration

# Every test module that reads zos.schema or the real migrations folder. The integration ones run
# on SQLite here (their server runs are the same tests against the same files) to keep this
# a couple of minutes; test_schema_matches_metadata runs on every backend.
SCHEMA_TESTS = [
    "tests/unit/test_schema_definition.py",
    "tests/unit/test_cli.py",
    "tests/integration/test_schema_matches_metadata.py",
    "tests/integration/test_schema_acceptance.py::test_migration_creates_exactly_the_specified_tables_columns_keys_and_indexes",
    "tests/integration/test_schema_acceptance.py::test_omitted_columns_receive_their_defaults",
    "tests/integration/test_migrate.py",
    "tests/integration/test_drift.py",
    "tests/integration/test_ops.py",
    "tests/integration/test_toolkit.py",
    "tests/integration/test_user_inputs.py",
    "tests/integration/test_verify.py::test_verify_passes_on_the_real_history",
]
SQLITE_ONLY = "not postgresql and not mariadb or test_schema_matches_metadata"


def test_the_suite_stays_green_after_adding_the_readme_migration(tmp_path: Path) -> None:
    copy = with_readme_migration(tmp_path / "project")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZOS_") or "TEST" in k}
    env["PYTHONPATH"] = str(copy / "src")
    probe = subprocess.run(
        [sys.executable, "-c", "import zos.schema as s; print(s.__file__)"],
        env=env,
        cwd=copy,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(probe.stdout.strip()) == copy / "src" / "zos" / "schema.py"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            "-k",
            SQLITE_ONLY,
            *SCHEMA_TESTS,
        ],
        env=env,
        cwd=copy,
        capture_output=True,
        text=True,
        timeout=900,
    )
    tail = "\n".join(result.stdout.splitlines()[-30:])
    assert result.returncode == 0, f"{EXAMPLE_FILE} turns the suite red:\n{tail}"
    assert " passed" in tail and "failed" not in tail and "error" not in tail
