"""The transaction discipline of a migration's body: the runner owns the transaction, so the
body cannot commit, roll back or close it through SQLAlchemy, the DBAPI connection, or SQL text.

The doors that Python can shut are shut for the body's duration; SQL text that would end the
transaction is refused before it reaches the database. What slips past (a deeper door) is
caught afterwards by the dialect, before anything is recorded.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from sqlalchemy import Connection, event


def failure_reason(error: BaseException) -> str:
    """One line for what a migration's code raised: the driver's first line, or what it did."""
    from sqlalchemy import exc

    from zos.database import first_line

    if isinstance(error, exc.DBAPIError):
        return first_line(error.orig)
    if isinstance(error, SystemExit):
        return f"it called sys.exit({error.code!r})"
    if not isinstance(error, Exception):
        return f"it raised {type(error).__name__}" + (f": {error}" if str(error) else "")
    return first_line(error)


class TransactionEscape(RuntimeError):
    """A migration's body tried to end or leave the transaction the runner gave it."""


_WORD = re.compile(r"[A-Za-z_]+")


def transaction_statement(sql: str, *, backslash_escapes: bool = False) -> str | None:
    """The first statement in ``sql`` that would end, start or replace a transaction, or None.

    Looks at the start of every statement (``;``-separated, outside string literals, quoted
    names, dollar quotes and comments): ``BEGIN``, ``START TRANSACTION``, ``COMMIT``, ``END``,
    ``ROLLBACK`` (but not ``ROLLBACK TO`` a savepoint), ``ABORT``, ``PREPARE TRANSACTION``,
    ``SET AUTOCOMMIT``. A trigger or an SQL-standard function body (``BEGIN … END``) is part of
    its ``CREATE`` statement, not a transaction statement.
    """
    depth = 0
    for statement in _statements(sql, backslash_escapes):
        words = [w.upper() for w in _WORD.findall(statement)[:4]]
        if not words:
            continue
        first = words[0]
        if depth:
            depth -= first == "END"
            continue
        if first == "CREATE":
            every = {w.upper() for w in _WORD.findall(statement)}
            # A trigger, function or procedure body runs until its END.
            depth += "BEGIN" in every and bool(every & {"TRIGGER", "FUNCTION", "PROCEDURE"})
            continue
        rest = words[1:]
        if first in ("COMMIT", "END", "ABORT") or (first == "BEGIN" and rest[:1] != ["ATOMIC"]):
            return " ".join(words[:2])
        if first == "START" and rest[:1] == ["TRANSACTION"]:
            return "START TRANSACTION"
        if first == "ROLLBACK" and "TO" not in rest:
            return "ROLLBACK"
        if first == "PREPARE" and rest[:1] == ["TRANSACTION"]:
            return "PREPARE TRANSACTION"
        if first == "SET" and "AUTOCOMMIT" in rest:
            return "SET AUTOCOMMIT"
    return None


def _statements(sql: str, backslash_escapes: bool) -> Iterator[str]:
    """``sql`` split at top-level semicolons, with quoted text and comments blanked out."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        char = sql[i]
        if char in "'\"`":
            end = _closing(sql, i, char, backslash_escapes and char == "'")
            out.append(" ")
            i = end
        elif sql.startswith("--", i):
            newline = sql.find("\n", i)
            i = n if newline < 0 else newline
        elif sql.startswith("/*", i):
            close = sql.find("*/", i + 2)
            i = n if close < 0 else close + 2
            out.append(" ")
        elif char == "$" and (match := re.match(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$", sql[i:])):
            tag = match.group(0)
            close = sql.find(tag, i + len(tag))
            i = n if close < 0 else close + len(tag)
            out.append(" ")
        elif char == ";":
            yield "".join(out)
            out = []
            i += 1
        else:
            out.append(char)
            i += 1
    yield "".join(out)


def _closing(sql: str, start: int, quote: str, backslash: bool) -> int:
    """The index just past the literal that opens at ``start`` (doubled quotes escape)."""
    i = start + 1
    while i < len(sql):
        if backslash and sql[i] == "\\":
            i += 2
            continue
        if sql[i] == quote:
            if sql.startswith(quote * 2, i):
                i += 2
                continue
            return i + 1
        i += 1
    return len(sql)


def _interruption(error: object) -> bool:
    return isinstance(error, BaseException) and not isinstance(error, Exception)


@contextmanager
def owned_transaction(conn: Connection) -> Iterator[None]:
    """Shut every door to ``conn``'s transaction that Python can shut, for the body's duration.

    Raises (from inside the body):
        TransactionEscape: the body called commit, rollback, close or detach on
            the connection, its pool proxy or its DBAPI connection, or sent SQL text that
            would end the transaction.
    """
    mysql = conn.dialect.name in ("mysql", "mariadb")
    fairy = conn.connection
    driver = fairy.dbapi_connection
    patched: list[tuple[Any, str]] = []
    dropping: list[bool] = []

    def shut(target: Any, method: str, where: str) -> None:
        original = getattr(target, method, None)

        def refuse(*args: object, **kwargs: object) -> Any:
            if method == "invalidate" and args and _interruption(args[0]):
                # SQLAlchemy itself drops a connection whose statement a signal interrupted
                # (a BaseException such as RunInterrupted): let it, and the closing that
                # follows, so the signal is what gets reported.
                dropping.append(True)
            if dropping and original is not None:
                return original(*args, **kwargs)
            raise TransactionEscape(
                f"upgrade() must not call {where}.{method}(): zos commits the migration "
                "together with its version record"
            )

        if isinstance(getattr(type(target), method, None), property):
            return  # psycopg's autocommit: its setter refuses inside a transaction itself
        try:
            setattr(target, method, refuse)
        except (AttributeError, TypeError):
            return  # a C type (sqlite3): the dialect's authorizer guards it instead
        patched.append((target, method))

    # Not invalidate(): SQLAlchemy calls it itself when a statement is interrupted; the
    # executor notices an invalidated connection after the body instead.
    for method in ("commit", "rollback", "close", "detach"):
        shut(conn, method, "conn")
        shut(fairy, method, "conn.connection")
    # Not the DBAPI close(): SQLAlchemy's pool calls it to drop an interrupted connection. A
    # closed connection rolls back on the server, and the executor notices it after the body.
    for method in ("commit", "rollback", "autocommit"):
        shut(driver, method, "the DBAPI connection")

    def refuse_sql(_conn: Any, _cursor: Any, statement: str, _parameters: Any, *_rest: Any) -> None:
        found = transaction_statement(statement, backslash_escapes=mysql)
        if found is not None:
            raise TransactionEscape(
                f"upgrade() must not run {found}: zos commits the migration together with "
                "its version record"
            )

    event.listen(conn, "before_cursor_execute", refuse_sql)
    try:
        yield
    finally:
        event.remove(conn, "before_cursor_execute", refuse_sql)
        for target, method in patched:
            with suppress(AttributeError):
                delattr(target, method)
