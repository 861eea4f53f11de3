"""Writes the skeleton of the next migration file into a source checkout's migrations folder.
Never touches a database.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from zos.errors import MigrationFileError, UsageError
from zos.migrator.discovery import find_migrations
from zos.migrator.source import MAX_VERSION

_MAX_SLUG = 60
# Lengths of a DESCRIPTION literal that keep the file as ruff format writes it: on one line
# when `DESCRIPTION = "..."` fits in 100 characters, else in parts that ruff will not join.
_ONE_LINE = 100 - len('DESCRIPTION = ""')
_PART = 72

TEMPLATE = """\
\"\"\"{summary}\"\"\"

from sqlalchemy import Connection

VERSION = {version}
DESCRIPTION = {description}


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


def new_migration(directory: Path, description: str, *, checkout_only: bool = False) -> Path:
    """Create ``NNN_slug.py`` numbered one above the newest file, and return its path.

    ``checkout_only`` (the package's own folder, no ``migrations_dir`` set): refuse a folder
    that is not in a source checkout, as a file written into an installed package is lost on
    the next install and never reaches version control.

    Raises:
        UsageError: the description gives an empty slug or holds control characters, the file
            exists already, the folder is missing or inside an installed package, or the next
            number is too big.
        MigrationFileError: the file cannot be written.
    """
    description = " ".join(description.split())
    slug = slugify(description)
    if not slug:
        raise UsageError(
            f"description {description!r} has no letters or digits to name the file after"
        )
    if any(unicodedata.category(char) in ("Cc", "Cs") for char in description):
        raise UsageError(f"description {description!r} holds control characters")
    if not directory.is_dir():
        raise UsageError(f"migrations folder {directory} does not exist")
    if checkout_only and source_checkout(directory) is None:
        raise UsageError(
            f"the migrations folder {directory} is inside an installed package, where a new "
            "file would be lost; set migrations_dir (ZOS_MIGRATIONS_DIR) to your migrations "
            "folder, or run zos from a source checkout (pip install -e .)"
        )
    scripts, _ = find_migrations(directory)
    version = max((script.version for script in scripts), default=0) + 1
    if version > MAX_VERSION:
        raise UsageError(f"the next version, {version}, is above {MAX_VERSION:,}")
    path = directory / f"{version:03d}_{slug}.py"
    text = TEMPLATE.format(
        summary=_docstring(description), version=version, description=literal(description)
    )
    try:
        with path.open("x", encoding="utf-8") as file:
            file.write(text)
    except FileExistsError as exc:
        raise UsageError(f"{path} exists already; it was not overwritten") from exc
    except OSError as exc:
        raise MigrationFileError(f"cannot write {path}: {exc.strerror}") from exc
    return path


def source_checkout(directory: Path) -> Path | None:
    """The root (the folder with ``pyproject.toml``) of the source tree ``directory`` is in, or
    None when it is inside an installed package (``site-packages``/``dist-packages``)."""
    folder = directory.resolve()
    if any(part in ("site-packages", "dist-packages") for part in folder.parts):
        return None
    return next((p for p in (folder, *folder.parents) if (p / "pyproject.toml").is_file()), None)


def literal(text: str) -> str:
    """``text`` as a Python string literal that ``ruff check`` and ``ruff format --check``
    accept as written: ASCII only (``\\N{...}`` for the rest, so no ambiguous character), the
    quotes ruff prefers, and split into parenthesised parts when it would not fit a line."""
    quote = "'" if text.count('"') > text.count("'") else '"'
    pieces = [_escaped(char, quote) for char in text]
    if sum(map(len, pieces)) <= _ONE_LINE:
        return f"{quote}{''.join(pieces)}{quote}"
    parts = [""]
    for piece in pieces:
        # A new part after a space once this one is long enough, or anywhere when it must.
        full = len(parts[-1]) + len(piece) > _PART
        if parts[-1] and (full or (len(parts[-1]) > _PART - 20 and parts[-1].endswith(" "))):
            parts.append("")
        parts[-1] += piece
    lines = "".join(f"    {quote}{part}{quote}\n" for part in parts)
    return f"(\n{lines})"


def _escaped(char: str, quote: str) -> str:
    if char in ("\\", quote):
        return "\\" + char
    if " " <= char <= "~":
        return char
    name = unicodedata.name(char, "")
    if name and unicodedata.category(char)[0] in "LNPSZ":
        return f"\\N{{{name}}}"
    return char.encode("unicode_escape").decode("ascii")


def _docstring(description: str) -> str:
    text = "".join(c if " " <= c <= "~" and c not in '\\"' else "?" for c in description)
    text = text.rstrip(". ") or "A migration"
    return text[:90] + "."
