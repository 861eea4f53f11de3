"""Reading SQLite's stored CREATE TABLE text: a parser over ``sqlite_tokens`` that finds each
column definition and table constraint as a span of that text. Pure.

The grammar is SQLite's own (https://sqlite.org/lang_createtable.html, tokenize.c). Whatever
the parser does not recognise is refused with ``DefinitionUnreadable``: it never guesses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from zos.migrator.ops.sqlite_tokens import DefinitionUnreadable, Token, same_name, tokenize, unquote

_CONFLICT_ACTIONS = {"ROLLBACK", "ABORT", "FAIL", "IGNORE", "REPLACE"}
_FK_ACTIONS = {"CASCADE", "RESTRICT"}
# Words that end a column's type name and start its constraints.
_COLUMN_CONSTRAINT_START = {
    "CONSTRAINT",
    "PRIMARY",
    "NOT",
    "NULL",
    "UNIQUE",
    "CHECK",
    "DEFAULT",
    "COLLATE",
    "REFERENCES",
    "GENERATED",
    "AS",
}
_TABLE_CONSTRAINT_START = {"CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK", "FOREIGN"}


@dataclass(frozen=True)
class Span:
    """Characters ``start``..``end`` of the definition's text."""

    start: int
    end: int


@dataclass(frozen=True)
class Constraint:
    """One column or table constraint: its kind (``"PRIMARY"``, ``"NOT NULL"``, ``"NULL"``,
    ``"UNIQUE"``, ``"CHECK"``, ``"DEFAULT"``, ``"COLLATE"``, ``"REFERENCES"``, ``"FOREIGN"``,
    ``"GENERATED"``), its name if given, where it is, and the names it mentions."""

    kind: str
    name: str | None
    span: Span
    names: tuple[str, ...]  # identifiers inside (columns, functions excluded)
    body: Span  # the part after the keyword(s), for DEFAULT: the value
    descending: bool = False
    autoincrement: bool = False


@dataclass(frozen=True)
class ColumnDefinition:
    name: str
    span: Span
    name_span: Span
    type_span: Span | None
    type_text: str  # as declared, "" when none
    constraints: tuple[Constraint, ...]

    def find(self, kind: str) -> list[Constraint]:
        return [c for c in self.constraints if c.kind == kind]

    @property
    def generated(self) -> bool:
        return bool(self.find("GENERATED"))


@dataclass(frozen=True)
class TableDefinition:
    """A parsed ``CREATE TABLE``: every item of its body as a span of ``sql``."""

    sql: str
    name: str
    name_span: Span
    body: Span  # inside the parentheses
    columns: tuple[ColumnDefinition, ...]
    constraints: tuple[Constraint, ...]
    options: tuple[str, ...]  # upper-cased words after the body: WITHOUT ROWID, STRICT
    items: tuple[Span, ...] = field(repr=False)  # every column and constraint, in order

    @property
    def without_rowid(self) -> bool:
        return "ROWID" in self.options

    def column(self, name: str) -> ColumnDefinition | None:
        return next((c for c in self.columns if same_name(c.name, name)), None)

    def rowid_alias(self) -> str | None:
        """The column that is the rowid (declared ``INTEGER PRIMARY KEY``), if any.

        SQLite's rule: the type is exactly INTEGER, and a column constraint's key is not DESC
        (a table constraint's may be). https://sqlite.org/lang_createtable.html#rowid
        """
        if self.without_rowid:
            return None
        keys = [c for c in self.constraints if c.kind == "PRIMARY"]
        for column in self.columns:
            if column.type_text.upper() != "INTEGER":
                continue
            own = column.find("PRIMARY")
            if own and not own[0].descending:
                return column.name
            if keys and len(keys[0].names) == 1 and same_name(keys[0].names[0], column.name):
                return column.name
        return None


class _Parser:
    def __init__(self, sql: str) -> None:
        self.sql = sql
        self.tokens = [t for t in tokenize(sql) if t.kind not in ("space", "comment")]
        self.i = 0

    # -- cursor -------------------------------------------------------------------------------
    def peek(self, ahead: int = 0) -> Token | None:
        at = self.i + ahead
        return self.tokens[at] if at < len(self.tokens) else None

    def word(self, ahead: int = 0) -> str:
        token = self.peek(ahead)
        return token.upper if token is not None else ""

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise self.unreadable("the definition ends too early")
        self.i += 1
        return token

    def expect(self, *words: str) -> None:
        for word in words:
            if self.word() != word:
                raise self.unreadable(f"expected {word}")
            self.i += 1

    def accept(self, *words: str) -> bool:
        if all(self.word(k) == w for k, w in enumerate(words)):
            self.i += len(words)
            return True
        return False

    def name(self) -> Token:
        token = self.take()
        if token.kind not in ("word", "quoted", "string"):
            raise self.unreadable("expected a name", token)
        return token

    def group(self) -> tuple[int, int]:
        """Consume a parenthesised group; the token indexes of its inside (first, past-last)."""
        if self.take().text != "(":
            raise self.unreadable("expected (")
        first, depth = self.i, 1
        while depth:
            token = self.take()
            if token.text == "(":
                depth += 1
            elif token.text == ")":
                depth -= 1
        return first, self.i - 1

    def unreadable(self, problem: str, token: Token | None = None) -> DefinitionUnreadable:
        token = token or self.peek()
        where = "the end" if token is None else repr(self.sql[token.start : token.start + 40])
        return DefinitionUnreadable(f"{problem} at {where}")

    def span(self, first: int, past: int) -> Span:
        if past <= first:
            at = self.tokens[first].start if first < len(self.tokens) else len(self.sql)
            return Span(at, at)
        return Span(self.tokens[first].start, self.tokens[past - 1].end)

    def names_in(self, first: int, past: int) -> tuple[str, ...]:
        """Identifiers between two token indexes, function names left out."""
        found = []
        for k in range(first, past):
            token = self.tokens[k]
            following = self.tokens[k + 1] if k + 1 < len(self.tokens) else None
            if token.is_name and not (following is not None and following.text == "("):
                found.append(unquote(token))
        return tuple(found)

    # -- grammar ------------------------------------------------------------------------------
    def table(self) -> TableDefinition:
        self.expect("CREATE")
        self.accept("TEMP") or self.accept("TEMPORARY")
        self.expect("TABLE")
        self.accept("IF", "NOT", "EXISTS")
        name = self.name()
        if self.peek() is not None and self.peek().text == ".":  # type: ignore[union-attr]
            self.i += 1
            name = self.name()
        first, past = self.group()
        options = tuple(t.upper for t in self.tokens[self.i :] if t.kind == "word")
        for token in self.tokens[self.i :]:
            if token.kind != "word" and token.text not in (",", ";"):
                raise self.unreadable("unexpected table option", token)
        # The body is parsed alone, so that its end reads as the end of the text.
        every_token = self.tokens
        self.i, self.tokens = first, every_token[:past]
        columns: list[ColumnDefinition] = []
        constraints: list[Constraint] = []
        items: list[Span] = []
        while self.i < past:
            start = self.i
            if self.word() in _TABLE_CONSTRAINT_START:
                constraints.append(self.table_constraint())
            else:
                if constraints:
                    raise self.unreadable("a column definition after a table constraint")
                columns.append(self.column())
            items.append(self.span(start, self.i))
            if self.i < past:
                if self.take().text != ",":
                    raise self.unreadable("expected , between definitions", self.tokens[self.i - 1])
                if self.i >= past:
                    raise self.unreadable("a definition list ending in ,")
        self.tokens = every_token
        return TableDefinition(
            self.sql,
            unquote(name),
            Span(name.start, name.end),
            self.span(first, past),
            tuple(columns),
            tuple(constraints),
            options,
            tuple(items),
        )

    def column(self) -> ColumnDefinition:
        start = self.i
        name = self.name()
        type_first = self.i
        while self.peek() is not None and self.peek().text not in (",",):  # type: ignore[union-attr]
            if self.word() in _COLUMN_CONSTRAINT_START:
                break
            token = self.peek()
            assert token is not None
            if token.text == "(":
                self.group()
                break
            if not token.is_name and token.kind != "string":
                raise self.unreadable("unexpected text in a column type")
            self.i += 1
        type_span = self.span(type_first, self.i) if self.i > type_first else None
        type_text = "" if type_span is None else self.sql[type_span.start : type_span.end]
        constraints = []
        while self.peek() is not None and self.peek().text != ",":  # type: ignore[union-attr]
            constraints.append(self.column_constraint())
        return ColumnDefinition(
            unquote(name),
            self.span(start, self.i),
            Span(name.start, name.end),
            type_span,
            type_text,
            tuple(constraints),
        )

    def constraint_name(self) -> str | None:
        if self.accept("CONSTRAINT"):
            return unquote(self.name())
        return None

    def conflict_clause(self) -> None:
        if self.accept("ON", "CONFLICT"):
            if self.word() not in _CONFLICT_ACTIONS:
                raise self.unreadable("expected a conflict resolution")
            self.i += 1

    def column_constraint(self) -> Constraint:
        start = self.i
        name = self.constraint_name()
        keyword = self.word()
        body_first = self.i + 1
        descending = autoincrement = False
        names: tuple[str, ...] = ()
        if self.accept("PRIMARY", "KEY"):
            body_first = self.i
            descending = self.word() == "DESC"
            self.accept("ASC") or self.accept("DESC")
            self.conflict_clause()
            autoincrement = self.accept("AUTOINCREMENT")
            kind = "PRIMARY"
        elif self.accept("NOT", "NULL"):
            body_first = self.i
            self.conflict_clause()
            kind = "NOT NULL"
        elif self.accept("NULL"):
            self.conflict_clause()
            kind = "NULL"
        elif self.accept("UNIQUE"):
            self.conflict_clause()
            kind = "UNIQUE"
        elif self.accept("CHECK"):
            first, past = self.group()
            names, kind = self.names_in(first, past), "CHECK"
        elif self.accept("DEFAULT"):
            self.default_value()
            kind = "DEFAULT"
        elif self.accept("COLLATE"):
            self.name()
            kind = "COLLATE"
        elif self.accept("REFERENCES"):
            self.i -= 1
            names, kind = self.foreign_key_clause(), "REFERENCES"
        elif self.word() in ("GENERATED", "AS"):
            self.accept("GENERATED", "ALWAYS")
            self.expect("AS")
            body_first = self.i
            first, past = self.group()
            names = self.names_in(first, past)
            self.accept("STORED") or self.accept("VIRTUAL")
            kind = "GENERATED"
        else:
            raise self.unreadable(f"unknown column constraint {keyword or '?'}")
        return Constraint(
            kind,
            name,
            self.span(start, self.i),
            names,
            self.span(body_first, self.i),
            descending,
            autoincrement,
        )

    def default_value(self) -> None:
        token = self.peek()
        if token is None:
            raise self.unreadable("DEFAULT without a value")
        if token.text == "(":
            self.group()
            return
        if token.text in ("+", "-"):
            self.i += 1
            if self.take().kind != "number":
                raise self.unreadable("expected a number after the sign")
            return
        if token.kind in ("string", "blob", "number", "word", "quoted"):
            self.i += 1
            return
        raise self.unreadable("unreadable DEFAULT value")

    def foreign_key_clause(self) -> tuple[str, ...]:
        """REFERENCES and what follows; the parent table's name first, then its columns."""
        self.expect("REFERENCES")
        names = [unquote(self.name())]
        if self.peek() is not None and self.peek().text == "(":  # type: ignore[union-attr]
            first, past = self.group()
            names += self.names_in(first, past)
        while True:
            if self.accept("ON"):
                if self.word() not in ("DELETE", "UPDATE"):
                    raise self.unreadable("expected DELETE or UPDATE")
                self.i += 1
                if not (
                    self.accept("SET", "NULL")
                    or self.accept("SET", "DEFAULT")
                    or self.accept("NO", "ACTION")
                    or (self.word() in _FK_ACTIONS and self.accept(self.word()))
                ):
                    raise self.unreadable("unknown foreign key action")
            elif self.accept("MATCH"):
                self.name()
            else:
                break
        if self.accept("NOT", "DEFERRABLE") or self.accept("DEFERRABLE"):
            self.accept("INITIALLY", "DEFERRED") or self.accept("INITIALLY", "IMMEDIATE")
        return tuple(names)

    def table_constraint(self) -> Constraint:
        start = self.i
        name = self.constraint_name()
        body_first = self.i
        if self.accept("PRIMARY", "KEY") or self.accept("UNIQUE"):
            kind = "PRIMARY" if self.tokens[self.i - 1].upper == "KEY" else "UNIQUE"
            first, past = self.group()
            names = self.indexed_columns(first, past)
            self.conflict_clause()
        elif self.accept("CHECK"):
            first, past = self.group()
            kind, names = "CHECK", self.names_in(first, past)
        elif self.accept("FOREIGN", "KEY"):
            first, past = self.group()
            names = self.names_in(first, past)
            kind = "FOREIGN"
            self.foreign_key_clause()
        else:
            raise self.unreadable("unknown table constraint")
        return Constraint(
            kind, name, self.span(start, self.i), names, self.span(body_first, self.i)
        )

    def indexed_columns(self, first: int, past: int) -> tuple[str, ...]:
        """The column of each term of a PRIMARY KEY or UNIQUE list, refusing expressions."""
        names = []
        expect_name = True
        k = first
        while k < past:
            token = self.tokens[k]
            if expect_name:
                if not token.is_name and token.kind != "string":
                    raise self.unreadable("an expression in a key's column list", token)
                names.append(unquote(token))
                expect_name = False
            elif token.text == ",":
                expect_name = True
            elif token.upper == "COLLATE":
                k += 1
            elif token.upper not in ("ASC", "DESC"):
                raise self.unreadable("unexpected text in a key's column list", token)
            k += 1
        return tuple(names)


def parse_table(sql: str) -> TableDefinition:
    """Parse a ``CREATE TABLE`` as SQLite stores it in ``sqlite_schema.sql``.

    Raises:
        DefinitionUnreadable: anything outside the grammar this parser knows.
    """
    return _Parser(sql).table()
