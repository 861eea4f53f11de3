"""The SQLite table rebuild as text: the changed CREATE TABLE, edited in place from the stored
one, and every statement and check the rebuild runs. Pure: no connection, nothing executed.

The steps are SQLite's documented 12-step procedure (https://sqlite.org/lang_altertable.html#otheralter).
"""

from __future__ import annotations

from dataclasses import dataclass

from zos.migrator.ops.common import UNCHANGED, Refused, Unchanged
from zos.migrator.ops.sqlite_checks import Check, conversion_checks
from zos.migrator.ops.sqlite_text import (
    ColumnDefinition,
    Constraint,
    Span,
    TableDefinition,
    parse_table,
)
from zos.migrator.ops.sqlite_tokens import (
    DefinitionUnreadable,
    Token,
    mentions,
    quote_name,
    same_name,
    tokenize,
)

REBUILD_PREFIX = "_zos_rebuild_"
_ROWID_NAMES = ("rowid", "_rowid_", "oid")


@dataclass(frozen=True)
class Rebuild:
    """Everything a rebuild runs, in order: ``before`` (create and copy), ``checks``, ``after``
    (drop, rename, restore indexes, triggers and the AUTOINCREMENT counter)."""

    before: tuple[str, ...]
    checks: tuple[Check, ...]
    after: tuple[str, ...]

    @property
    def statements(self) -> list[str]:
        """Every statement as the rebuild sends it, checks in their place."""
        return [*self.before, *(check.sql for check in self.checks), *self.after]


@dataclass(frozen=True)
class SchemaEntry:
    """One row of ``sqlite_schema``."""

    type: str
    name: str
    table: str
    sql: str


def _edit(sql: str, edits: list[tuple[Span, str]]) -> str:
    """``sql`` with each span replaced by its text; spans must not overlap."""
    for span, replacement in sorted(edits, key=lambda edit: edit[0].start, reverse=True):
        sql = sql[: span.start] + replacement + sql[span.end :]
    return sql


def _with_space_before(table: TableDefinition, span: Span) -> Span:
    """``span`` widened to take the whitespace and comments before it, to remove it cleanly."""
    start = span.start
    while start > 0 and table.sql[start - 1] in " \t\n\r\f":
        start -= 1
    return Span(start, span.end)


def _column(table: TableDefinition, name: str) -> ColumnDefinition:
    column = table.column(name)
    if column is None:
        raise LookupError(f"table {table.name} has no column {name}")
    return column


def default_sql(value: str) -> str:
    """A DEFAULT value as SQLite takes it: a literal, a signed number or a name as written,
    anything else in parentheses (SQLite allows an expression only there)."""
    tokens = [t for t in tokenize(value) if t.kind not in ("space", "comment")]
    if not tokens:
        raise Refused("an empty server_default; pass None to remove the default")
    single = len(tokens) == 1 and tokens[0].kind != "punct"
    signed = len(tokens) == 2 and tokens[0].text in "+-" and tokens[1].kind == "number"
    grouped = tokens[0].text == "(" and _closes_at_end(tokens)
    return value.strip() if single or signed or grouped else f"({value.strip()})"


def _closes_at_end(tokens: list[Token]) -> bool:
    depth = 0
    for k, token in enumerate(tokens):
        depth += token.text == "("
        depth -= token.text == ")"
        if depth == 0 and k < len(tokens) - 1:
            return False
    return depth == 0


def alter_column(
    table: TableDefinition,
    name: str,
    *,
    type_sql: str | None = None,
    nullable: bool | None = None,
    default: str | Unchanged | None = UNCHANGED,
) -> str:
    """The CREATE TABLE with column ``name`` changed as asked and every other character kept."""
    column = _column(table, name)
    edits: list[tuple[Span, str]] = []
    append: list[str] = []
    counted = any(c.autoincrement for c in column.find("PRIMARY"))
    if counted and type_sql is not None and type_sql.upper() != "INTEGER":
        raise Refused(f"column {name} is AUTOINCREMENT, which SQLite allows on INTEGER only")
    if type_sql is not None and any(
        t.upper == "COLLATE" for t in tokenize(type_sql) if t.kind not in ("space", "comment")
    ):
        # The collation asked for with the type replaces the column's own (the first wins).
        edits += [(_with_space_before(table, c.span), "") for c in column.find("COLLATE")]
    if type_sql is not None and type_sql != column.type_text:
        if column.type_span is not None:
            edits.append((column.type_span, type_sql))
        else:
            edits.append((Span(column.name_span.end, column.name_span.end), f" {type_sql}"))
    if nullable is not None:
        not_null = column.find("NOT NULL")
        if nullable:
            edits += [(_with_space_before(table, c.span), "") for c in not_null]
        elif not not_null:
            edits += [(_with_space_before(table, c.span), "") for c in column.find("NULL")]
            append.append(" NOT NULL")
    if not isinstance(default, Unchanged):
        current = column.find("DEFAULT")
        if column.generated and default is not None:
            raise Refused(f"column {name} is generated and cannot have a default")
        if default is None:
            edits += [(_with_space_before(table, c.span), "") for c in current]
        elif current:
            edits.append((current[0].body, default_sql(default)))
            edits += [(_with_space_before(table, c.span), "") for c in current[1:]]
        else:
            append.append(f" DEFAULT {default_sql(default)}")
    if append:
        edits.append((Span(column.span.end, column.span.end), "".join(append)))
    return _edit(table.sql, edits)


def add_column(table: TableDefinition, definition: str) -> str:
    """The CREATE TABLE with ``definition`` (a column's SQL) after its last column."""
    last = table.columns[-1].span.end
    return _edit(table.sql, [(Span(last, last), f", {definition}")])


def add_constraint(table: TableDefinition, definition: str) -> str:
    """The CREATE TABLE with ``definition`` (a table constraint's SQL) after its last item."""
    last = table.items[-1].end
    return _edit(table.sql, [(Span(last, last), f", {definition}")])


def _item_removal(table: TableDefinition, span: Span) -> Span:
    """The span of one body item with the comma that separates it from its neighbour."""
    index = table.items.index(span)
    if index > 0:
        return Span(table.items[index - 1].end, span.end)
    if len(table.items) == 1:
        raise Refused(f"table {table.name} would be left with no columns")
    return Span(span.start, table.items[1].start)


def drop_constraint(table: TableDefinition, kind: str, name: str) -> str:
    """The CREATE TABLE without the named constraint of ``kind`` ("CHECK", "UNIQUE",
    "FOREIGN"), whether written as a table constraint or inside a column definition."""
    for constraint in table.constraints:
        if constraint.kind == kind and _named(constraint, name):
            return _edit(table.sql, [(_item_removal(table, constraint.span), "")])
    column_kind = "REFERENCES" if kind == "FOREIGN" else kind
    for column in table.columns:
        for constraint in column.find(column_kind):
            if _named(constraint, name):
                return _edit(table.sql, [(_with_space_before(table, constraint.span), "")])
    label = {"CHECK": "CHECK constraint", "UNIQUE": "UNIQUE constraint"}.get(kind, "foreign key")
    raise LookupError(f"table {table.name} has no {label} named {name}")


def _named(constraint: Constraint, name: str) -> bool:
    return constraint.name is not None and same_name(constraint.name, name)


def drop_column(table: TableDefinition, name: str) -> str:
    """The CREATE TABLE without column ``name`` and the key constraints over it (UNIQUE,
    PRIMARY KEY, FOREIGN KEY), as PostgreSQL drops them.

    Raises:
        Refused: a CHECK or a generated column of the table reads the column.
    """
    column = _column(table, name)
    keyed = column.find("PRIMARY") or any(
        c.kind == "PRIMARY" and any(same_name(used, name) for used in c.names)
        for c in table.constraints
    )
    if keyed and table.without_rowid:
        raise Refused(f"column {name} is in the primary key a WITHOUT ROWID table must keep")
    edits = [(_item_removal(table, column.span), "")]
    for other in table.columns:
        for constraint in other.constraints:
            reads = any(same_name(used, name) for used in constraint.names)
            if other is not column and constraint.kind in ("CHECK", "GENERATED") and reads:
                raise Refused(
                    f"column {name} is read by column {other.name}'s "
                    f"{constraint.kind.lower()} expression; change that first"
                )
    for constraint in table.constraints:
        if not any(same_name(used, name) for used in constraint.names):
            continue
        if constraint.kind == "CHECK":
            raise Refused(
                f"column {name} is read by CHECK constraint {constraint.name or '(unnamed)'}; "
                "drop it first with ops.drop_check"
            )
        edits.append((_item_removal(table, constraint.span), ""))
    if len(edits) > 1 and len(table.items) - len(edits) < 1:
        raise Refused(f"table {table.name} would be left with no columns")
    # Two removals that each took the comma before them may touch, never overlap.
    return _edit(table.sql, edits)


def index_reads(sql: str, column: str) -> bool:
    """Whether a CREATE INDEX uses ``column``: in its terms or its WHERE (names after ON)."""
    tokens = [t for t in tokenize(sql) if t.kind not in ("space", "comment")]
    on = next((k for k, t in enumerate(tokens) if t.upper == "ON"), None)
    if on is None:
        raise Refused(f"cannot read the index definition {sql!r}")
    rest = sql[tokens[on + 1].end :] if on + 1 < len(tokens) else ""
    return mentions(rest, column)


def rowid_name(table: TableDefinition) -> str | None:
    """A name that reaches the rowid of ``table`` (one not taken by a column), if any."""
    return next((n for n in _ROWID_NAMES if table.column(n) is None), None)


def plan_rebuild(
    old: TableDefinition,
    new_sql: str,
    dependents: list[SchemaEntry],
    *,
    dropped_indexes: frozenset[str] = frozenset(),
    sequence: int | None = None,
    legacy_alter_table: bool = False,
    schema: str | None = None,
) -> Rebuild:
    """The statements that rebuild ``old`` as ``new_sql`` keeping every row and rowid.

    ``dependents`` are the table's indexes and triggers in creation order (re-created as
    stored, except ``dropped_indexes``); ``sequence`` is its ``sqlite_sequence`` value.

    Raises:
        Refused: the new definition cannot be read, or the rowids could not be kept.
    """
    try:
        new = parse_table(new_sql)
    except DefinitionUnreadable as exc:
        raise Refused(f"the changed definition of table {old.name} is unreadable: {exc}") from exc
    alias = old.rowid_alias()
    if alias is not None and new.column(alias) is not None and new.rowid_alias() is None:
        raise Refused(
            f"column {alias} of {old.name} is the table's rowid (INTEGER PRIMARY KEY); changed "
            "so, it would stop being the rowid and new rows would get no key. SQLite's INTEGER "
            "already holds 64 bits: use BigInteger().with_variant(Integer(), 'sqlite')"
        )
    temporary = REBUILD_PREFIX + old.name
    # Names qualified with the table's schema ("main", "temp"): unqualified, SQLite would look
    # in temp first, and CREATE TABLE would make the copy in main.
    prefix = "" if schema is None else f"{quote_name(schema)}."
    create = (
        new_sql[: new.name_span.start]
        + prefix
        + quote_name(temporary)
        + new_sql[new.name_span.end :]
    )
    shared = [
        c.name
        for c in new.columns
        if not c.generated and (o := old.column(c.name)) and not o.generated
    ]
    copied = [quote_name(name) for name in shared]
    if not old.without_rowid and not new.without_rowid and new.rowid_alias() is None:
        rowid = rowid_name(old)
        if rowid is None or rowid_name(new) != rowid:
            raise Refused(f"table {old.name}'s rowids cannot be copied: columns hide every name")
        copied.insert(0, rowid)
    listed = ", ".join(copied)
    source, target = prefix + quote_name(old.name), prefix + quote_name(temporary)
    before = (create, f"INSERT INTO {target} ({listed}) SELECT {listed} FROM {source}")
    after = [f"DROP TABLE {source}"]
    # The modern rename re-checks every view and trigger, and one naming the table would fail
    # while it is gone; the legacy rename leaves them (and the children's REFERENCES) alone.
    after.append("PRAGMA legacy_alter_table = ON")
    after.append(f"ALTER TABLE {target} RENAME TO {quote_name(old.name)}")
    after.append(f"PRAGMA legacy_alter_table = {'ON' if legacy_alter_table else 'OFF'}")
    after += [
        entry.sql
        for entry in dependents
        if not (entry.type == "index" and entry.name in dropped_indexes)
    ]
    if any(c.autoincrement for column in old.columns for c in column.find("PRIMARY")):
        # The copy set the counter to the highest rowid copied (or 0 for none); the old value
        # may be higher (deleted rows), or absent.
        literal = "'" + old.name.replace("'", "''") + "'"
        after.append(f"DELETE FROM {prefix}sqlite_sequence WHERE name = {literal}")
        if sequence is not None:
            after.append(
                f"INSERT INTO {prefix}sqlite_sequence (name, seq) VALUES ({literal}, {sequence})"
            )
    return Rebuild(before, tuple(conversion_checks(old, new, temporary, schema)), tuple(after))
