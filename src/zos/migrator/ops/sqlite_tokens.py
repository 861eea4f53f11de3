"""SQLite's tokens: a tokenizer whose tokens join back into the exact text it was given, and
how SQLite quotes and compares names. Pure. Rules from SQLite's tokenize.c and
https://sqlite.org/lang_keywords.html.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["space", "comment", "string", "blob", "quoted", "word", "number", "punct"]

_SPACE = " \t\n\f\r"
_CLOSE_QUOTE = {'"': '"', "`": "`", "[": "]"}


class DefinitionUnreadable(ValueError):
    """A stored definition holds something this parser cannot read with certainty."""


@dataclass(frozen=True)
class Token:
    kind: Kind
    text: str
    start: int

    @property
    def end(self) -> int:
        return self.start + len(self.text)

    @property
    def upper(self) -> str:
        return self.text.upper() if self.kind == "word" else ""

    @property
    def is_name(self) -> bool:
        return self.kind in ("word", "quoted")


def tokenize(sql: str) -> list[Token]:
    """Split ``sql`` into tokens whose texts, joined, give ``sql`` back exactly.

    Raises:
        DefinitionUnreadable: an unterminated string literal or quoted identifier.
    """
    tokens: list[Token] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        kind: Kind
        if c in _SPACE:
            j = i
            while j < n and sql[j] in _SPACE:
                j += 1
            kind = "space"
        elif sql.startswith("--", i):
            newline = sql.find("\n", i)
            j, kind = (n if newline < 0 else newline + 1), "comment"
        elif sql.startswith("/*", i):
            close = sql.find("*/", i + 2)
            j, kind = (n if close < 0 else close + 2), "comment"  # SQLite allows one open at EOF
        elif c == "'":
            j, kind = _quoted_end(sql, i, "'"), "string"
        elif c in "xX" and i + 1 < n and sql[i + 1] == "'":
            j, kind = _quoted_end(sql, i + 1, "'"), "blob"
        elif c in _CLOSE_QUOTE:
            j, kind = _quoted_end(sql, i, _CLOSE_QUOTE[c]), "quoted"
        elif c.isdigit() or (c == "." and i + 1 < n and sql[i + 1].isdigit()):
            j = i
            while j < n and (sql[j].isalnum() or sql[j] in "._"):
                if sql[j] in "eE" and j + 1 < n and sql[j + 1] in "+-" and not _is_hex(sql, i):
                    j += 1
                j += 1
            kind = "number"
        elif c.isalpha() or c == "_" or ord(c) >= 0x80:
            j = i + 1
            while j < n and (sql[j].isalnum() or sql[j] in "_$" or ord(sql[j]) >= 0x80):
                j += 1
            kind = "word"
        else:
            j, kind = i + 1, "punct"
        tokens.append(Token(kind, sql[i:j], i))
        i = j
    return tokens


def _is_hex(sql: str, start: int) -> bool:
    return sql[start : start + 2].lower() == "0x"


def _quoted_end(sql: str, start: int, close: str) -> int:
    """The index after the quote closing the one at ``start``; a doubled quote is an escape,
    except inside [brackets], which have none."""
    i = start + 1
    while True:
        found = sql.find(close, i)
        if found < 0:
            raise DefinitionUnreadable(f"unterminated quote starting at: {sql[start : start + 30]}")
        if close != "]" and sql.startswith(close * 2, found):
            i = found + 2
            continue
        return found + 1


def unquote(token: Token) -> str:
    """The name a word, quoted identifier or string token stands for."""
    if token.kind in ("quoted", "string"):
        quote = token.text[-1]
        inner = token.text[1:-1]
        return inner if quote == "]" else inner.replace(quote * 2, quote)
    return token.text


def quote_name(name: str) -> str:
    """``name`` as a double-quoted SQLite identifier."""
    return '"' + name.replace('"', '""') + '"'


def same_name(a: str, b: str) -> bool:
    """SQLite compares identifiers ignoring ASCII case only."""
    return _ascii_fold(a) == _ascii_fold(b)


def _ascii_fold(name: str) -> str:
    return "".join(c.lower() if c.isascii() else c for c in name)


def mentions(sql: str, name: str) -> bool:
    """Whether ``sql`` uses ``name`` as an identifier (quoted or not; strings do not count)."""
    return any(t.is_name and same_name(unquote(t), name) for t in tokenize(sql))
