"""What ``verify`` and ``check`` read from migration files without running them: the modules a
file imports, and the data it declares it changes. Runs no migration code."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from zos.migrator.source import changes_data

# A migration means the same thing forever: only SQLAlchemy, the helpers zos keeps compatible,
# the standard library and the folder's own `_name.py` helpers.
_ALLOWED_ZOS = ("zos.migrator.ops", "zos.migrator.backfill")


def import_problems(path: Path) -> list[str]:
    """``NNN_slug.py: imports X …`` for each import the rules of a migration forbid.

    Every ``import`` anywhere in the file counts, also inside functions. ``from zos.migrator
    import ops, backfill`` is allowed; ``zos.schema`` and ``zos.database`` (the newest schema)
    and any other project module are not."""
    try:
        tree = ast.parse(path.read_bytes(), filename=path.name)
    except (SyntaxError, ValueError, OSError):
        return []  # the file's own rules report these
    problems: list[str] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            if _allowed(node.module):
                names = []
        for name in names:
            if not _allowed(name):
                problems.append(f"{path.name}: imports {name} (line {node.lineno}): {_why(name)}")
    return problems


def _allowed(name: str) -> bool:
    root = name.split(".")[0]
    if root in ("sqlalchemy", "__future__") or root.startswith("_"):
        return True
    if root == "zos":
        return any(name == z or name.startswith(z + ".") for z in _ALLOWED_ZOS)
    return root in sys.stdlib_module_names


def _why(name: str) -> str:
    if name.startswith(("zos.schema", "zos.database")):
        return (
            "a migration must not read the newest schema; copy the definitions it needs "
            "into the file"
        )
    return (
        "a migration may import only SQLAlchemy, zos.migrator.ops, zos.migrator.backfill, "
        "the standard library and _helpers beside it"
    )


def declared_changes(path: Path) -> dict[str, frozenset[str]]:
    """The file's ``CHANGES_DATA`` (empty when it declares none or the file is invalid)."""
    try:
        tree = ast.parse(path.read_bytes(), filename=path.name)
    except (SyntaxError, ValueError, OSError):
        return {}
    for statement in tree.body:
        target: ast.expr | None = None
        node: ast.expr | None = None
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target, node = statement.targets[0], statement.value
        elif isinstance(statement, ast.AnnAssign):
            target, node = statement.target, statement.value
        if isinstance(target, ast.Name) and target.id == "CHANGES_DATA" and node is not None:
            try:
                value = ast.literal_eval(node)
            except (ValueError, TypeError, SyntaxError):
                return {}
            return changes_data(value) or {}
    return {}


def folder_problems(directory: Path) -> list[str]:
    """Every forbidden import in the migration files (``NNN_*.py``) of ``directory``."""
    files = sorted(p for p in directory.glob("[0-9]*.py") if p.is_file())
    return [problem for path in files for problem in import_problems(path)]
