"""MariaDB/MySQL: the tables a schema change waits for, locked before the migration's
``started`` mark is written and held until that change has run.

MariaDB commits DDL at once, so a migration is marked ``started`` before its first schema
change commits. If the mark were written first and the change then waited for its table's
metadata lock, a run stopped while it waits would leave a mark for a change that never ran.
So the runner takes ``LOCK TABLES <tables> WRITE, <version table> WRITE`` first (bounded by
``lock_wait_timeout``, cancelled by ``KILL QUERY``), writes the mark, runs the change, and
releases the locks: nothing can slip in between (MariaDB "LOCK TABLES": a WRITE lock waits
for every other session's metadata lock on the table, including a transaction that has only
read it; ALTER, CREATE/DROP INDEX, CREATE TRIGGER, DROP, RENAME and TRUNCATE may run on
tables so locked).

Statements are read with a small tokenizer (comments, backquoted names with any character,
qualified names, lists of tables), not by pattern search on the text.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from zos.errors import ZosError

if TYPE_CHECKING:
    from sqlalchemy import Connection

# ER_LOCK_WAIT_TIMEOUT, ER_QUERY_INTERRUPTED: the wait ended; the caller's lock-wait handling
# (retry, signals) takes it from there.
_WAIT_ENDED = (1205, 1317)
# ER_DBACCESS_DENIED_ERROR, ER_TABLEACCESS_DENIED_ERROR: no LOCK TABLES privilege.
_DENIED = (1044, 1142)
_TOKEN = re.compile(
    r"""\s+|--[^\n]*|\#[^\n]*|/\*.*?\*/
    |(?P<quoted>`(?:[^`]|``)*`)
    |(?P<string>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*")
    |(?P<word>[\w$]+)
    |(?P<other>.)""",
    re.VERBOSE | re.DOTALL,
)

Name = tuple[str | None, str]  # (database or None for the current one, table)


class LockTablesRefused(ZosError):
    """The migration user may not ``LOCK TABLES``, so a mark could not wait for its locks."""

    exit_code = 1


# (what it is: an upper-cased keyword, "`" for a name, "'" for a string, or a character; text)
Token = tuple[str, str]


def tokens(statement: str) -> list[Token]:
    """The statement's words, backquoted names and punctuation, without comments or
    whitespace: ``ALTER TABLE `a b`.t`` -> [("ALTER", "ALTER"), ("TABLE", "TABLE"),
    ("`", "a b"), (".", "."), ("T", "t")]."""
    found: list[Token] = []
    for match in _TOKEN.finditer(statement):
        if match.group("quoted"):
            found.append(("`", match.group("quoted")[1:-1].replace("``", "`")))
        elif match.group("string"):
            found.append(("'", match.group("string")[1:-1]))
        elif match.group("word"):
            found.append((match.group("word").upper(), match.group("word")))
        elif match.group("other"):
            found.append((match.group("other"), match.group("other")))
    return found


def first_word(statement: str) -> str:
    """The first keyword of ``statement`` after comments, upper-cased ("" for none)."""
    found = tokens(statement)
    return found[0][0] if found and found[0][0] != "`" else ""


def tables_to_lock(statement: str) -> list[Name] | None:
    """The tables ``statement`` changes and may have to wait for, when it is a schema change
    known to run under ``LOCK TABLES … WRITE``; None for any other statement.

    A pure function: ``ALTER TABLE t …`` -> [(None, "t")]; ``DROP TABLE a, db.b`` ->
    [(None, "a"), ("db", "b")]; ``RENAME TABLE a TO x, b TO y`` -> a and b; ``TRUNCATE [TABLE]
    t``; ``CREATE|DROP [UNIQUE|FULLTEXT|SPATIAL] INDEX i ON t``; ``CREATE [OR REPLACE]
    [DEFINER = u] TRIGGER n BEFORE|AFTER e ON t``. Temporary tables and views: None.
    """
    words = tokens(statement)
    if not words:
        return None
    verb, rest = words[0][0], words[1:]
    if verb == "ALTER":
        rest = _skip(rest, "ONLINE", "IGNORE")
        if _keys(rest, 1) == ["TABLE"]:
            return _names(_skip(rest[1:], "IF", "EXISTS"), single=True)
        return None
    if verb == "TRUNCATE":
        return _names(_skip(rest, "TABLE"), single=True)
    if verb == "DROP":
        if _keys(rest, 1) == ["TABLE"]:
            return _names(_skip(rest[1:], "IF", "EXISTS"), single=False)
        if _keys(rest, 1) == ["INDEX"]:
            return _after_on(rest)
        return None  # DROP TEMPORARY TABLE, DROP VIEW, …
    if verb == "RENAME" and _keys(rest, 1) == ["TABLE"]:
        return _renamed(rest[1:])
    if verb == "CREATE":
        rest = _skip_definer(_skip(rest, "OR", "REPLACE", "UNIQUE", "FULLTEXT", "SPATIAL"))
        if _keys(rest, 1) in (["INDEX"], ["TRIGGER"]):
            return _after_on(rest)
    return None


def views_to_wait_for(statement: str) -> list[Name] | None:
    """The views a view change replaces or drops (``CREATE OR REPLACE … VIEW v``, ``ALTER …
    VIEW v``, ``DROP VIEW [IF EXISTS] a, b``); None for any other statement. MariaDB refuses
    these under ``LOCK TABLES`` (error 1192), so their locks can be waited for, not held."""
    words = tokens(statement)
    if not words:
        return None
    verb, rest = words[0][0], words[1:]
    if verb == "DROP" and _keys(rest, 1) == ["VIEW"]:
        return _names(_skip(rest[1:], "IF", "EXISTS"), single=False)
    if verb in ("CREATE", "ALTER"):
        rest = _skip(rest, "OR", "REPLACE")
        # Only view options may stand between the verb and VIEW: ALGORITHM = …, DEFINER = …,
        # SQL SECURITY …; anything else is another kind of statement.
        options = {"ALGORITHM", "DEFINER", "SQL", "SECURITY", "=", "@", "(", ")", "`", "'"}
        options |= {"MERGE", "TEMPTABLE", "UNDEFINED", "INVOKER", "CURRENT_USER"}
        previous = ""
        while rest and rest[0][0] != "VIEW":
            user_or_host = previous in ("=", "@") or (len(rest) > 1 and rest[1][0] == "@")
            if rest[0][0] not in options and not user_or_host:
                return None
            previous, rest = rest[0][0], rest[1:]
        if rest:
            return _names(_skip(rest[1:], "IF", "NOT", "EXISTS"), single=True)
    return None


def _keys(words: list[Token], count: int) -> list[str]:
    return [key for key, _text in words[:count]]


def _skip(words: list[Token], *skippable: str) -> list[Token]:
    while words and words[0][0] in skippable:
        words = words[1:]
    return words


def _skip_definer(words: list[Token]) -> list[Token]:
    if _keys(words, 2) != ["DEFINER", "="]:
        return words
    words = words[2:]
    while words and words[0][0] not in ("TRIGGER", "INDEX", "VIEW"):
        words = words[1:]  # user, `u`@`h`, CURRENT_USER()
    return words


def _name(words: list[Token]) -> tuple[Name | None, list[Token]]:
    """One possibly qualified name at the start of ``words``, and what follows it."""
    if not words or not _is_identifier(words[0]):
        return None, words
    first, words = words[0][1], words[1:]
    if _keys(words, 1) == ["."] and len(words) > 1 and _is_identifier(words[1]):
        return (first, words[1][1]), words[2:]
    return (None, first), words


def _names(words: list[Token], *, single: bool) -> list[Name] | None:
    found: list[Name] = []
    while True:
        name, words = _name(words)
        if name is None:
            return found or None
        found.append(name)
        if single or _keys(words, 1) != [","]:
            return found
        words = words[1:]


def _renamed(words: list[Token]) -> list[Name] | None:
    found: list[Name] = []
    while True:
        name, words = _name(words)
        if name is None or _keys(words, 1) != ["TO"]:
            return found or None
        found.append(name)
        _target, words = _name(words[1:])
        if _keys(words, 1) != [","]:
            return found
        words = words[1:]


def _after_on(words: list[Token]) -> list[Name] | None:
    # A backquoted `on` is a name ("`"), never the keyword ON.
    keys = [key for key, _text in words]
    if "ON" not in keys:
        return None
    return _names(words[keys.index("ON") + 1 :], single=True)


def _is_identifier(word: Token) -> bool:
    return word[0] == "`" or bool(re.fullmatch(r"[\w$]+", word[1]))


def wait_for_views(conn: Connection, views: list[Name]) -> None:
    """Wait (bounded like ``lock_tables``) until the existing ``views`` can be locked, by
    locking and at once unlocking them: the view change that follows is then unlikely, though
    not certain, to wait after its mark (a reader may arrive in between).

    Raises:
        pymysql.err.OperationalError: the wait gave up (1205) or was cancelled (1317).
        LockTablesRefused: the user lacks the LOCK TABLES privilege.
    """
    driver: Any = conn.connection.dbapi_connection
    cursor = driver.cursor()
    try:
        existing = [name for name in views if _exists(cursor, name, "VIEW")]
        if existing and _lock(cursor, existing):
            cursor.execute("UNLOCK TABLES")
    finally:
        cursor.close()


def lock_tables(conn: Connection, tables: list[Name], own: Name) -> bool:
    """Take ``LOCK TABLES … WRITE`` on those of ``tables`` that exist and on ``own`` (the
    version table), on the runner's session. Returns whether they are held.

    Raises:
        pymysql.err.OperationalError: the wait gave up (1205) or was cancelled (1317); SQLAlchemy
            wraps it as the failing statement's error.
        LockTablesRefused: the user lacks the LOCK TABLES privilege.
    """
    driver: Any = conn.connection.dbapi_connection
    cursor = driver.cursor()
    try:
        existing = [name for name in tables if _exists(cursor, name, "BASE TABLE")]
        return bool(existing) and _lock(cursor, [*existing, own])
    finally:
        cursor.close()


def _lock(cursor: Any, names: list[Name]) -> bool:
    listed = ", ".join(f"{_quoted(name)} WRITE" for name in names)
    try:
        cursor.execute(f"LOCK TABLES {listed}")
    except Exception as error:  # the driver's own error class
        code = getattr(error, "args", (None,))[0]
        if code in _WAIT_ENDED:
            raise
        if code in _DENIED:
            raise LockTablesRefused(
                "the migration user may not LOCK TABLES, which zos needs on MariaDB/MySQL to "
                "wait for a change's table lock before marking the migration started; grant "
                "it (GRANT LOCK TABLES ON <database>.* TO <user>)"
            ) from error
        return False  # anything else is left for the statement itself to meet
    return True


def unlock_tables(conn: Connection) -> None:
    """``UNLOCK TABLES`` on the runner's session; quiet when the connection is gone."""
    driver: Any = conn.connection.dbapi_connection
    if driver is None:
        return
    try:
        cursor = driver.cursor()
        try:
            cursor.execute("UNLOCK TABLES")
        finally:
            cursor.close()
    except Exception:  # the connection broke: the server released the locks with it
        return


def _exists(cursor: Any, name: Name, kind: str) -> bool:
    database, table = name
    cursor.execute(
        "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_NAME = %s"
        " AND TABLE_SCHEMA = COALESCE(%s, DATABASE()) AND TABLE_TYPE = %s",
        (table, database, kind),
    )
    row = cursor.fetchone()
    return bool(row and row[0])


def _quoted(name: Name) -> str:
    database, table = name
    part = "`" + table.replace("`", "``") + "`"
    return part if database is None else "`" + database.replace("`", "``") + "`." + part
