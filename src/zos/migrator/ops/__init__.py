"""Schema changes for migrations (``from zos.migrator import ops``): re-exports only.

``helpers`` holds the public functions; ``sqlite_tokens``, ``sqlite_text``, ``sqlite_rebuild``
and ``sqlite_checks`` are the pure reading and statement-building half of the SQLite rebuild,
``sqlite``, ``postgresql`` and ``mysql`` what each backend runs.
"""

from zos.migrator.ops.common import UNCHANGED, Refused
from zos.migrator.ops.helpers import (
    add_check,
    add_column,
    add_foreign_key,
    add_unique,
    alter_column,
    drop_check,
    drop_column,
    drop_foreign_key,
    drop_unique,
    rename_column,
)
from zos.migrator.ops.sqlite_tokens import DefinitionUnreadable

__all__ = [
    "UNCHANGED",
    "DefinitionUnreadable",
    "Refused",
    "add_check",
    "add_column",
    "add_foreign_key",
    "add_unique",
    "alter_column",
    "drop_check",
    "drop_column",
    "drop_foreign_key",
    "drop_unique",
    "rename_column",
]
