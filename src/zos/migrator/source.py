"""What a migration file says, read without running it: its compiled code, the checksum of what
that code does, and the constants every command checks the same way. Imports no SQLAlchemy.
"""

from __future__ import annotations

import ast
import hashlib
import json
import unicodedata
from dataclasses import dataclass, replace
from types import CodeType

# _schema_version.version is INTEGER: 32 bits, signed, on PostgreSQL and MariaDB/MySQL.
MAX_VERSION = 2**31 - 1
_BOM = b"\xef\xbb\xbf"
_CONSTANTS = (
    "VERSION",
    "DESCRIPTION",
    "TRANSACTIONAL",
    "BATCHES",
    "DDL_LOCK_TIMEOUT_SECONDS",
    "DDL_LOCK_RETRIES",
    "CHANGES_DATA",
)
# Bounds of the per-migration lock-wait settings: a day, as for every timeout in the config.
MAX_DDL_LOCK_TIMEOUT_SECONDS = 86_400
MAX_DDL_LOCK_RETRIES = 100
_FUNCTIONS = ("upgrade", "check", "backfill")
# Fields that say how the code was written, not what it does (or that the parser sets from
# layout): a comment-like marker, a string's `u` prefix, and load/store contexts.
_IGNORED_FIELDS = frozenset({"ctx", "kind", "type_comment", "type_ignores"})


@dataclass(frozen=True)
class SourceFacts:
    """A migration file read statically: valid when ``problems`` is empty."""

    checksum: str  # sha256 of the canonical form of its syntax tree (see canonical_checksum)
    legacy_checksum: str  # sha256 of its bytes, CRLF and BOM normalised (older records)
    description: str  # DESCRIPTION with whitespace collapsed; "" when invalid
    transactional: bool
    code: CodeType | None  # compiled from exactly the bytes hashed; None when invalid
    problems: tuple[str, ...]
    # The import statements of the top level, each (level, module, names): found or not by
    # zos.migrator.imports, which may look at the file system.
    imports: tuple[tuple[int, str, tuple[str, ...]], ...] = ()

    def without_code(self) -> SourceFacts:
        """The same facts for a file found invalid by a later check."""
        return replace(self, description="", code=None)


def legacy_checksum(data: bytes) -> str:
    """sha256 of a file's bytes with CRLF as LF and no byte-order mark: how zos recorded files
    before it hashed their syntax tree, still accepted as a match."""
    return hashlib.sha256(data.removeprefix(_BOM).replace(b"\r\n", b"\n")).hexdigest()


def read_source(data: bytes, version: int, filename: str) -> SourceFacts:
    """Compile ``data`` and check, without running it, what every migration must define.

    The rules: the file compiles; ``VERSION`` is an integer literal equal to ``version``;
    ``DESCRIPTION`` is a non-empty string literal; ``upgrade`` is a top-level ``def``, or the
    file is a backfill (``BATCHES = Batches(...)`` and ``def backfill``); ``TRANSACTIONAL``, if
    present, is ``True`` or ``False``; each of these names is bound once at the top level.
    """
    legacy = legacy_checksum(data)
    try:
        tree = ast.parse(data, filename=filename)
        # From the tree, not the bytes: parsing the file a second time would cost as much as
        # the first (a third of this function on a large file such as 001_initial.py).
        code = compile(tree, filename, "exec", dont_inherit=True)
        checksum = canonical_checksum(tree)
    except SyntaxError as exc:
        where = "" if exc.lineno is None else f" at line {exc.lineno}"
        return _invalid(legacy, f"syntax error{where}: {exc.msg}")
    except (ValueError, RecursionError, MemoryError) as exc:
        # ValueError: null bytes (3.11); the others: code nested too deeply to compile.
        return _invalid(legacy, f"cannot be compiled: {type(exc).__name__}: {exc}")
    problems, values = _check(tree, version)
    if problems:
        return _invalid(legacy, "; ".join(problems), checksum)
    description = values.get("DESCRIPTION")
    transactional = values.get("TRANSACTIONAL", True)
    assert isinstance(description, str) and isinstance(transactional, bool)
    imports = tuple(_imports(tree))
    return SourceFacts(
        checksum, legacy, " ".join(description.split()), transactional, code, (), imports
    )


def _imports(tree: ast.Module) -> list[tuple[int, str, tuple[str, ...]]]:
    # Only statements run unconditionally on import: one inside try/if may be a fallback.
    found: list[tuple[int, str, tuple[str, ...]]] = []
    for statement in tree.body:
        if isinstance(statement, ast.Import):
            found.extend((0, alias.name, ()) for alias in statement.names)
        elif isinstance(statement, ast.ImportFrom):
            names = tuple(alias.name for alias in statement.names)
            found.append((statement.level, statement.module or "", names))
    return found


def _invalid(legacy: str, problem: str, checksum: str | None = None) -> SourceFacts:
    return SourceFacts(checksum or legacy, legacy, "", True, None, (problem,))


def _check(tree: ast.Module, version: int) -> tuple[list[str], dict[str, object]]:
    """What is wrong with the top level of ``tree``, and the literal constants it defines."""
    bound: dict[str, int] = {}
    assigned: dict[str, ast.expr] = {}
    defined: dict[str, ast.stmt] = {}
    for statement in tree.body:
        for name in _bound_names(statement):
            bound[name] = bound.get(name, 0) + 1
        if isinstance(statement, ast.Assign | ast.AnnAssign) and statement.value is not None:
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            if len(targets) == 1 and isinstance(targets[0], ast.Name):
                assigned.setdefault(targets[0].id, statement.value)
        elif isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
            defined.setdefault(statement.name, statement)

    problems = [
        f"binds {name} more than once at the top level"
        for name in (*_CONSTANTS, *_FUNCTIONS)
        if bound.get(name, 0) > 1
    ]
    values: dict[str, object] = {}
    for name in _CONSTANTS:
        if name in assigned and name != "BATCHES":
            values[name] = _literal(assigned[name])
    missing = [
        label
        for label, present in (
            ("VERSION", "VERSION" in assigned),
            ("DESCRIPTION", "DESCRIPTION" in assigned),
            ("upgrade()", "upgrade" in bound or "backfill" in bound or "BATCHES" in bound),
        )
        if not present
    ]
    if missing:
        problems.append("does not define " + ", ".join(missing))
    number = values.get("VERSION")
    if "VERSION" in assigned and (not isinstance(number, int) or isinstance(number, bool)):
        problems.append(f"VERSION must be an integer literal, not {_shown(assigned['VERSION'])}")
    elif isinstance(number, int) and number != version:
        problems.append(f"VERSION is {number} but the file name says {version}")
    text = values.get("DESCRIPTION")
    if "DESCRIPTION" in assigned and not (isinstance(text, str) and text.strip()):
        problems.append("DESCRIPTION must be a non-empty string literal")
    elif isinstance(text, str) and any(unicodedata.category(c) in ("Cc", "Cs") for c in text):
        # Shown on terminals and stored by every driver: no escape sequences, no lone surrogates.
        problems.append("DESCRIPTION must be printable text (no control characters)")
    if "TRANSACTIONAL" in assigned and not isinstance(values["TRANSACTIONAL"], bool):
        problems.append("TRANSACTIONAL must be True or False")
    if "CHANGES_DATA" in assigned and changes_data(values["CHANGES_DATA"]) is None:
        problems.append(
            "CHANGES_DATA must be a dict literal of table names to lists of column names, "
            'such as {"messages": ["content"]}'
        )
    problems.extend(_lock_wait_problems(assigned, values))
    for name in _FUNCTIONS:
        if name in bound and not isinstance(defined.get(name), ast.FunctionDef):
            problems.append(f"{name} must be a function defined with def at the top level")
    problems.extend(_backfill_problems(assigned, bound, values))
    return problems, values


def changes_data(value: object) -> dict[str, frozenset[str]] | None:
    """``CHANGES_DATA`` as tables to the columns whose values a migration changes on purpose
    (``"*"``: it deletes rows of that table too); None when the value has another shape."""
    if not isinstance(value, dict):
        return None
    declared: dict[str, frozenset[str]] = {}
    for table, columns in value.items():
        if not (isinstance(table, str) and isinstance(columns, list | tuple)):
            return None
        if not all(isinstance(column, str) for column in columns):
            return None
        declared[table] = frozenset(columns)
    return declared


def _lock_wait_problems(assigned: dict[str, ast.expr], values: dict[str, object]) -> list[str]:
    """``DDL_LOCK_TIMEOUT_SECONDS``: a number of seconds above 0; ``DDL_LOCK_RETRIES``: an
    integer from 0. Both override ``database.ddl_lock_timeout_seconds`` and the default retries
    for this migration only (zos.migrator.lockwait)."""
    problems: list[str] = []
    seconds = values.get("DDL_LOCK_TIMEOUT_SECONDS")
    if "DDL_LOCK_TIMEOUT_SECONDS" in assigned and not (
        isinstance(seconds, int | float)
        and not isinstance(seconds, bool)
        and 0 < seconds <= MAX_DDL_LOCK_TIMEOUT_SECONDS
    ):
        problems.append(
            "DDL_LOCK_TIMEOUT_SECONDS must be a number of seconds above 0 and at most "
            f"{MAX_DDL_LOCK_TIMEOUT_SECONDS}, not {_shown(assigned['DDL_LOCK_TIMEOUT_SECONDS'])}"
        )
    retries = values.get("DDL_LOCK_RETRIES")
    if "DDL_LOCK_RETRIES" in assigned and not (
        isinstance(retries, int)
        and not isinstance(retries, bool)
        and 0 <= retries <= MAX_DDL_LOCK_RETRIES
    ):
        problems.append(
            f"DDL_LOCK_RETRIES must be a whole number from 0 to {MAX_DDL_LOCK_RETRIES}, "
            f"not {_shown(assigned['DDL_LOCK_RETRIES'])}"
        )
    return problems


def _backfill_problems(
    assigned: dict[str, ast.expr], bound: dict[str, int], values: dict[str, object]
) -> list[str]:
    if ("BATCHES" in bound) != ("backfill" in bound):
        return ["a backfill needs both BATCHES = Batches(...) and backfill(conn, low, high)"]
    if "BATCHES" not in bound:
        return []
    batches = assigned.get("BATCHES")
    called = batches.func if isinstance(batches, ast.Call) else None
    if not (
        (isinstance(called, ast.Name) and called.id == "Batches")
        or (isinstance(called, ast.Attribute) and called.attr == "Batches")
    ):
        return ["BATCHES must be Batches(table=..., key=...) from zos.migrator.backfill"]
    if values.get("TRANSACTIONAL") is False:
        return ["a backfill commits batch by batch already; drop TRANSACTIONAL = False"]
    return []


def _bound_names(statement: ast.stmt) -> list[str]:
    """The module-level names a top-level statement binds (not inside compound statements)."""
    if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [statement.name]
    if isinstance(statement, ast.Import | ast.ImportFrom):
        return [(alias.asname or alias.name).split(".")[0] for alias in statement.names]
    if isinstance(statement, ast.Assign):
        targets = statement.targets
    elif isinstance(statement, ast.AnnAssign | ast.AugAssign):
        if isinstance(statement, ast.AnnAssign) and statement.value is None:
            return []
        targets = [statement.target]
    else:
        return []
    return [
        node.id
        for target in targets
        for node in ast.walk(target)
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)
    ]


def _literal(node: ast.expr) -> object:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


def _shown(node: ast.expr) -> str:
    text = ast.unparse(node)
    return text if len(text) <= 40 else text[:39] + "…"


def canonical_checksum(tree: ast.Module) -> str:
    """sha256 of what the code does, not how it is laid out.

    The syntax tree is serialised as JSON by hand rather than with ``ast.dump``, whose output
    changes between Python versions: node and field names only, fields that are None or empty
    left out (3.12 added ``type_params``, empty unless used), positions, load/store contexts and
    string prefixes left out, constants tagged with their type and written by value, adjacent
    literal parts of an f-string joined, and docstrings cleaned as ``inspect.cleandoc`` does with
    trailing spaces dropped. So comments, quotes, parentheses, line breaks, trailing commas,
    a BOM, CRLF and docstring indentation (all that ``ruff format`` changes) keep the checksum.

    Raises:
        RecursionError: the tree is nested too deeply to serialise.
    """
    text = json.dumps(_canonical(tree), ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _canonical(node: object) -> object:
    if isinstance(node, list):
        return [_canonical(item) for item in node]
    if not isinstance(node, ast.AST):
        return _constant(node)
    if isinstance(node, ast.Constant):
        return ["Constant", _constant(node.value)]
    out: list[object] = [type(node).__name__]
    for name in node._fields:
        value = getattr(node, name, None)
        if name in _IGNORED_FIELDS or value is None or value == []:
            continue
        if name == "body" and isinstance(node, _DOCUMENTED):
            value = _clean_docstring(value)
        elif name == "values" and isinstance(node, ast.JoinedStr):
            value = _joined_parts(value)
        out.append([name, _canonical(value)])
    return out


_DOCUMENTED = (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _constant(value: object) -> object:
    # Tagged so that 1, 1.0, True, "1" and b"1" differ; ints in hex, which has no digit limit.
    if value is None or value is Ellipsis:
        return [repr(value)]
    if isinstance(value, bool):
        return ["bool", value]
    if isinstance(value, int):
        return ["int", hex(value)]
    if isinstance(value, str):
        return ["str", value]
    if isinstance(value, bytes):
        return ["bytes", value.hex()]
    if isinstance(value, float | complex):
        return [type(value).__name__, repr(value)]
    if isinstance(value, tuple | frozenset):
        return [type(value).__name__, [_constant(item) for item in value]]
    raise TypeError(f"unexpected constant {value!r}")


def _clean_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    first = body[0] if body else None
    if not (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        return body
    lines = first.value.value.expandtabs().splitlines()
    rest = [line for line in lines[1:] if line.strip()]
    margin = min((len(line) - len(line.lstrip()) for line in rest), default=0)
    cleaned = [lines[0].strip() if lines else "", *(line[margin:] for line in lines[1:])]
    text = "\n".join(line.rstrip() for line in cleaned).strip()
    return [ast.Expr(ast.Constant(text)), *body[1:]]


def _joined_parts(values: list[ast.expr]) -> list[ast.expr]:
    """An f-string's parts with adjacent literal text joined and empty text dropped, as the
    parsers of 3.11 and 3.12 (PEP 701) split the same f-string differently."""
    parts: list[ast.expr] = []
    for value in values:
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            if not value.value:
                continue
            last = parts[-1] if parts else None
            if isinstance(last, ast.Constant) and isinstance(last.value, str):
                parts[-1] = ast.Constant(last.value + value.value)
                continue
        parts.append(value)
    return parts
