"""Writes the skeleton of the next migration file. Never touches a database."""

from __future__ import annotations

import re
from pathlib import Path

from zos.errors import UsageError
from zos.migrator.discovery import find_migrations

_MAX_SLUG = 60

TEMPLATE = """\
from sqlalchemy import Connection, text

VERSION = {version}
DESCRIPTION = {description!r}


def upgrade(conn: Connection) -> None:
    # Runs inside this migration's transaction: never commit here. Import SQLAlchemy only,
    # never zos.schema, so this file means the same thing forever; update zos/schema.py to
    # match in the same change.
    raise NotImplementedError("write the change: conn.execute(text('ALTER TABLE ...'))")
"""


def slugify(description: str) -> str:
    """Lower-case words joined by underscores: ``"Add topic index!"`` -> ``add_topic_index``."""
    words = re.findall(r"[a-z0-9]+", description.lower())
    return "_".join(words)[:_MAX_SLUG].rstrip("_")


def new_migration(directory: Path, description: str) -> Path:
    """Create ``NNN_slug.py`` numbered one above the newest file, and return its path.

    Raises:
        UsageError: the description gives an empty slug, or the file exists already.
    """
    description = " ".join(description.split())
    slug = slugify(description)
    if not slug:
        raise UsageError(
            f"description {description!r} has no letters or digits to name the file after"
        )
    if not directory.is_dir():
        raise UsageError(f"migrations folder {directory} does not exist")
    scripts, _ = find_migrations(directory)
    version = max((script.version for script in scripts), default=0) + 1
    path = directory / f"{version:03d}_{slug}.py"
    try:
        with path.open("x", encoding="utf-8") as file:
            file.write(TEMPLATE.format(version=version, description=description))
    except FileExistsError as exc:
        raise UsageError(f"{path} exists already; it was not overwritten") from exc
    return path
