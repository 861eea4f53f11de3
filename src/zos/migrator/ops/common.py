"""What every backend's table changes share: the ``UNCHANGED`` marker, the refusal, and one way
to send SQL text to the database exactly as written."""

from __future__ import annotations

from enum import Enum
from typing import Final

from sqlalchemy import Connection, CursorResult


class Unchanged(Enum):
    UNCHANGED = "unchanged"


UNCHANGED: Final = Unchanged.UNCHANGED
"""``alter_column(server_default=UNCHANGED)``: leave the column's default as it is."""


class Refused(ValueError):
    """A table change that zos cannot make without losing or guessing something; nothing
    was changed by the call that raised it."""


def execute(conn: Connection, sql: str) -> CursorResult[object]:
    """Run ``sql`` as written. With no parameter collection the drivers do no placeholder
    processing, so ``%``, ``:name`` and ``?`` inside literals reach the database intact
    (SQLAlchemy's ``no_parameters`` execution option)."""
    return conn.exec_driver_sql(sql, execution_options={"no_parameters": True})


def backend(conn: Connection) -> str:
    """``"sqlite"``, ``"postgresql"`` or ``"mysql"`` (MariaDB too)."""
    name = conn.dialect.name
    if name in ("mysql", "mariadb"):
        return "mysql"
    if name not in ("sqlite", "postgresql"):
        raise NotImplementedError(f"zos.migrator.ops does not support {name}")
    return name


def quote(conn: Connection, name: str) -> str:
    """``name`` as an identifier for text sent by ``execute``: quoted where SQLAlchemy would
    quote it, but with no ``%`` doubled (SQLAlchemy's quoting doubles it for drivers with
    format placeholders, which only placeholder processing would undo)."""
    if conn.dialect.identifier_preparer.quote(name) == name:
        return name
    mark = "`" if backend(conn) == "mysql" else '"'
    return mark + name.replace(mark, mark + mark) + mark


def quote_all(conn: Connection, names: list[str]) -> str:
    return ", ".join(quote(conn, name) for name in names)
