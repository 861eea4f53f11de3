"""MariaDB/MySQL ``MODIFY COLUMN`` built from the column's full definition as ``SHOW CREATE TABLE``
reports it, changing only the parts asked for, so AUTO_INCREMENT, CHECKs (JSON's json_valid),
charset, collation, comment, ON UPDATE, INVISIBLE and generated attributes survive."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import Connection

from zos.migrator.ops.common import UNCHANGED, Refused, Unchanged, execute, quote

# Words that end a column's data type and start its attributes (MariaDB's SHOW CREATE TABLE).
_ATTRIBUTES = {
    "NOT", "NULL", "DEFAULT", "AUTO_INCREMENT", "COMMENT", "COLLATE", "CHARACTER", "CHARSET",
    "ON", "INVISIBLE", "VISIBLE", "GENERATED", "AS", "CHECK", "PRIMARY", "UNIQUE", "KEY",
    "REFERENCES", "VIRTUAL", "PERSISTENT", "STORED", "COLUMN_FORMAT", "STORAGE", "SRID",
    "WITH", "WITHOUT", "COMPRESSED",
}  # fmt: skip
_CHARSET_WORDS = re.compile(r"\b(COLLATE|CHARACTER|CHARSET)\b", re.IGNORECASE)
_TEXT_TYPES = re.compile(r"CHAR|TEXT|ENUM|SET\b", re.IGNORECASE)
_TOKEN = re.compile(
    r"""\s+|'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*"|`(?:[^`]|``)*`|[A-Za-z0-9_$.]+|.""",
    re.DOTALL,
)


@dataclass(frozen=True)
class _Token:
    text: str
    start: int

    @property
    def end(self) -> int:
        return self.start + len(self.text)

    @property
    def upper(self) -> str:
        return self.text.upper()


def _tokens(sql: str) -> list[_Token]:
    found = [_Token(m.group(), m.start()) for m in _TOKEN.finditer(sql)]
    if "".join(t.text for t in found) != sql:
        raise Refused("the column definition the server reported could not be read")
    return [t for t in found if not t.text.isspace()]


def column_definition(create_table: str, name: str) -> str:
    """The definition of column ``name`` in a ``SHOW CREATE TABLE`` text, as written there.

    Raises:
        LookupError: no such column.
    """
    tokens = _tokens(create_table)
    opening = next(k for k, token in enumerate(tokens) if token.text == "(")
    closing = _group_end(tokens, opening)
    start, depth = opening + 1, 0
    for k in range(opening + 1, closing + 1):
        text = tokens[k].text
        if k == closing or (depth == 0 and text == ","):
            first = tokens[start]
            if first.text.startswith("`") and _same(first.text[1:-1].replace("``", "`"), name):
                return create_table[first.start : tokens[k - 1].end]
            start = k + 1
        elif text == "(":
            depth += 1
        elif text == ")":
            depth -= 1
    raise LookupError(f"the table has no column {name}")


def _same(a: str, b: str) -> bool:
    return a.lower() == b.lower()  # column names are case-insensitive in MariaDB and MySQL


def modified_definition(
    definition: str,
    *,
    type_sql: str | None,
    nullable: bool | None,
    default: str | Unchanged | None = UNCHANGED,
) -> str:
    """``definition`` with its type, NULL-ness and/or DEFAULT replaced, every other attribute
    kept as written.

    Raises:
        Refused: the definition holds something this reader does not know.
    """
    tokens = _tokens(definition)
    edits: list[tuple[int, int, str]] = []
    type_end = _type_end(tokens, definition)
    type_span = (tokens[1].start, tokens[type_end - 1].end)
    after_type = type_span[1]
    null_span: tuple[int, int] | None = None
    default_span: tuple[int, int] | None = None
    charset: list[tuple[int, int]] = []
    k = type_end
    while k < len(tokens):
        word = tokens[k].upper
        if word == "NOT" and k + 1 < len(tokens) and tokens[k + 1].upper == "NULL":
            null_span, k = (tokens[k].start, tokens[k + 1].end), k + 2
        elif word == "NULL":
            null_span, k = (tokens[k].start, tokens[k].end), k + 1
        elif word == "DEFAULT":
            end = _value_end(tokens, k + 1)
            default_span, k = (tokens[k].start, tokens[end].end), end + 1
        elif word in ("CHARACTER", "CHARSET", "COLLATE"):
            skip = 3 if word == "CHARACTER" else 2
            charset.append((tokens[k].start, tokens[k + skip - 1].end))
            k += skip
        elif tokens[k].text == "(":
            k = _group_end(tokens, k) + 1
        else:
            k += 1
    # Charset and collation belong to the data type: attributes go after them.
    after_type = max([after_type, *(end for _, end in charset)])
    if (
        nullable is False
        and isinstance(default, Unchanged)
        and default_span is not None
        and definition[default_span[0] : default_span[1]].upper() == "DEFAULT NULL"
    ):
        default = None  # a NOT NULL column cannot keep DEFAULT NULL; it had no other default
    if type_sql is not None:
        edits.append((*type_span, type_sql))
        # A new type of no text, or one naming its own charset or collation, replaces them.
        if not _TEXT_TYPES.search(type_sql) or _CHARSET_WORDS.search(type_sql):
            edits += [(start - 1, end, "") for start, end in charset]  # with the space before
    if nullable is not None:
        wanted = "NULL" if nullable else "NOT NULL"
        if null_span is not None:
            edits.append((*null_span, wanted))
        else:
            edits.append((after_type, after_type, f" {wanted}"))
    if not isinstance(default, Unchanged):
        if default is None:
            if default_span is not None:
                edits.append((default_span[0] - 1, default_span[1], ""))
        elif default_span is not None:
            edits.append((*default_span, f"DEFAULT {default}"))
        else:
            at = null_span[1] if null_span is not None else after_type
            edits.append((at, at, f" DEFAULT {default}"))
    for start, end, text in sorted(edits, reverse=True):
        definition = definition[:start] + text + definition[end:]
    return definition


def _type_end(tokens: list[_Token], definition: str) -> int:
    """The index of the first token after the data type (the name is token 0)."""
    k = 1
    while k < len(tokens) and tokens[k].upper not in _ATTRIBUTES:
        if tokens[k].text == "(":
            k = _group_end(tokens, k)
        k += 1
    if k == 1:
        raise Refused(f"no data type in the column definition {definition!r}")
    return k


def declared_type(definition: str) -> str:
    """The data type of a column definition, as written (``decimal(8,2) unsigned``)."""
    tokens = _tokens(definition)
    return definition[tokens[1].start : tokens[_type_end(tokens, definition) - 1].end]


def _group_end(tokens: list[_Token], k: int) -> int:
    depth = 0
    for j in range(k, len(tokens)):
        depth += tokens[j].text == "("
        depth -= tokens[j].text == ")"
        if depth == 0:
            return j
    raise Refused("unbalanced parentheses in a column definition")


def _value_end(tokens: list[_Token], k: int) -> int:
    """The index of the last token of a DEFAULT value starting at ``k``."""
    if k >= len(tokens):
        raise Refused("a DEFAULT without a value")
    if tokens[k].text == "(":
        return _group_end(tokens, k)
    if tokens[k].text in ("-", "+"):
        return k + 1
    following = tokens[k + 1] if k + 1 < len(tokens) else None
    if following is not None and following.start == tokens[k].end and following.text[0] == "'":
        return k + 1  # b'101', x'0A', _utf8mb4'text': a prefix written against its literal
    if k + 1 < len(tokens) and tokens[k + 1].text == "(":  # current_timestamp(6)
        return _group_end(tokens, k + 1)
    return k


def alter_column(
    conn: Connection,
    table: str,
    name: str,
    *,
    type_sql: str | None,
    nullable: bool | None,
    default: str | Unchanged | None,
) -> None:
    """MODIFY column ``name`` of ``table`` from its reported definition."""
    create = tuple(execute(conn, f"SHOW CREATE TABLE {quote(conn, table)}").one())[1]
    current = column_definition(str(create), name)
    changed = modified_definition(current, type_sql=type_sql, nullable=nullable, default=default)
    if type_sql is not None:
        _refuse_lossy_conversion(conn, table, name, declared_type(current), type_sql)
    execute(conn, f"ALTER TABLE {quote(conn, table)} MODIFY COLUMN {changed}")


def _refuse_lossy_conversion(
    conn: Connection, table: str, name: str, old_type: str, type_sql: str
) -> None:
    """Refuse a type change that would round, cut or reformat a value: MariaDB rounds DECIMAL
    3.75 to INT 4 with only a note, even in strict mode, reads '007' as 7 and drops CHAR's
    trailing spaces. Each value is stored in a temporary table in the new type and back in the
    old one (strict mode, so what cannot be stored fails there), and the two old-type values
    compared as bytes: ``<=>`` would compare '007' and 7 as numbers, and 'ab' and 'ab   '
    with padding. Creating and dropping a TEMPORARY table does not commit (MariaDB: implicit
    commit)."""
    scratch = quote(conn, "_zos_conversion_check")
    execute(
        conn,
        f"CREATE TEMPORARY TABLE {scratch}"
        f" (old_value {old_type}, new_value {type_sql}, back_value {old_type})",
    )
    mode = conn.exec_driver_sql("SELECT @@SESSION.sql_mode").scalar()
    try:
        execute(conn, "SET SESSION sql_mode = CONCAT(@@SESSION.sql_mode, ',STRICT_ALL_TABLES')")
        column = quote(conn, name)
        execute(
            conn,
            f"INSERT INTO {scratch} (old_value, new_value)"
            f" SELECT {column}, {column} FROM {quote(conn, table)}",
        )
        execute(conn, f"UPDATE {scratch} SET back_value = new_value")
        changed = execute(
            conn,
            f"SELECT count(*) FROM {scratch}"
            " WHERE NOT (CAST(old_value AS BINARY) <=> CAST(back_value AS BINARY))",
        ).scalar()
    finally:
        conn.exec_driver_sql("SET SESSION sql_mode = %(mode)s", {"mode": mode})
        execute(conn, f"DROP TEMPORARY TABLE {scratch}")
    if changed:
        raise Refused(
            f"column {name}: {changed} value(s) would change when converted to {type_sql}"
        )
