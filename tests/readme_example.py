"""A copy of the project with the README's "Writing a migration" example added, as a developer
following it would: the 002 file exactly as printed, and the two columns in ``schema.py``."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
EXAMPLE_FILE = "002_add_message_edits.py"
# The columns the README's 002 adds, as a developer writes them into schema.py.
SCHEMA_COLUMNS = (
    '    Column("edited_at", Timestamp, nullable=True),\n'
    '    Column("edit_count", Integer, nullable=False, server_default=text("0")),\n'
)


def example_migration() -> str:
    """The Python block printed right after "Example, `src/zos/migrations/002_…`:"."""
    readme = README.read_text(encoding="utf-8")
    match = re.search(
        rf"Example, `src/zos/migrations/{re.escape(EXAMPLE_FILE)}`:\n\n```python\n(.*?)```",
        readme,
        re.DOTALL,
    )
    assert match is not None, "README.md no longer shows the 002 example"
    return match.group(1)


def with_readme_migration(destination: Path) -> Path:
    """Copy ``src`` and ``tests`` of the project into ``destination`` with the README's 002
    added; returns ``destination``. Fails if the project already has a version 2."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis")
    for part in ("src", "tests"):
        shutil.copytree(ROOT / part, destination / part, ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", destination / "pyproject.toml")
    shutil.copy2(README, destination / "README.md")
    migrations = destination / "src" / "zos" / "migrations"
    assert not list(migrations.glob("002_*.py")), "the project has a 002 already"
    (migrations / EXAMPLE_FILE).write_text(example_migration(), encoding="utf-8")
    schema = destination / "src" / "zos" / "schema.py"
    source = schema.read_text(encoding="utf-8")
    start = source.index('messages = Table(\n    "messages",')
    end = source.index("    Index(", start)
    source = source[:end] + SCHEMA_COLUMNS + source[end:]
    source = source.replace(
        "from sqlalchemy import (\n", "from sqlalchemy import (\n    text,\n", 1
    )
    schema.write_text(source, encoding="utf-8")
    return destination
