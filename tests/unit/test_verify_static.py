"""What verify and check read from a migration file without running it: forbidden imports and
the CHANGES_DATA declaration."""

from __future__ import annotations

from pathlib import Path

import pytest

from zos.migrator.source import read_source
from zos.migrator.verify_static import declared_changes, folder_problems, import_problems

HEAD = "VERSION = 2\nDESCRIPTION = 'Two'\n"
BODY = "\n\ndef upgrade(conn):\n    pass\n"


def write(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "002_two.py"
    path.write_text(source)
    return path


@pytest.mark.parametrize(
    "line",
    [
        "from sqlalchemy import text",
        "import sqlalchemy.dialects.mysql",
        "from zos.migrator import ops",
        "from zos.migrator.ops import add_column",
        "from zos.migrator.backfill import Batches",
        "import _shared",
        "from _shared import columns",
        "import json",
        "from datetime import datetime",
        "from __future__ import annotations",
    ],
)
def test_allowed_imports_are_no_problem(tmp_path: Path, line: str) -> None:
    assert import_problems(write(tmp_path, f"{line}\n{HEAD}{BODY}")) == []


@pytest.mark.parametrize(
    ("line", "name"),
    [
        ("from zos.schema import metadata", "zos.schema.metadata"),
        ("from zos.database import metadata", "zos.database.metadata"),
        ("import zos.schema", "zos.schema"),
        ("from zos import schema", "zos.schema"),
        ("from zos.migrator import runner", "zos.migrator.runner"),
        ("import requests", "requests"),
    ],
)
def test_a_forbidden_import_is_named_with_its_line(tmp_path: Path, line: str, name: str) -> None:
    problems = import_problems(write(tmp_path, f"{HEAD}{line}\n{BODY}"))
    assert len(problems) == 1 and problems[0].startswith(f"002_two.py: imports {name} (line 3): ")


def test_an_import_inside_upgrade_counts_too(tmp_path: Path) -> None:
    source = f"{HEAD}\n\ndef upgrade(conn):\n    from zos.schema import metadata\n"
    (problem,) = import_problems(write(tmp_path, source))
    assert "imports zos.schema.metadata (line 6)" in problem


def test_folder_problems_read_only_migration_files(tmp_path: Path) -> None:
    write(tmp_path, f"import zos.schema\n{HEAD}{BODY}")
    (tmp_path / "_helper.py").write_text("import zos.schema\n")
    assert folder_problems(tmp_path) == [
        "002_two.py: imports zos.schema (line 1): a migration must not read the newest schema; "
        "copy the definitions it needs into the file"
    ]


def test_changes_data_is_read_statically(tmp_path: Path) -> None:
    path = write(tmp_path, f'{HEAD}CHANGES_DATA = {{"notes": ["body"], "logs": ["*"]}}{BODY}')
    assert declared_changes(path) == {"notes": frozenset({"body"}), "logs": frozenset({"*"})}
    assert read_source(path.read_bytes(), 2, path.name).problems == ()


@pytest.mark.parametrize("value", ['["notes"]', '{"notes": "body"}', '{"notes": [1]}', "make()"])
def test_changes_data_of_another_shape_breaks_the_file_rules(value: str) -> None:
    facts = read_source(f"{HEAD}CHANGES_DATA = {value}{BODY}".encode(), 2, "002_two.py")
    assert facts.problems == (
        "CHANGES_DATA must be a dict literal of table names to lists of column names, such as "
        '{"messages": ["content"]}',
    )
