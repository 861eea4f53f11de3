"""Scratch PostgreSQL databases for the benchmark: created for it, dropped at its end.

The server is the one the test suite uses (``BENCH_POSTGRES``, default postgres on
127.0.0.1:5432, trust authentication). Every database this module makes is named
``zos_bench_<pid>_<name>``, so two runs never meet, and ``drop_all`` removes every one of them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

SERVER = os.environ.get("BENCH_POSTGRES", "postgres@127.0.0.1:5432")
# How long a setup statement (CREATE DATABASE from a big template, DROP) may take.
STATEMENT_TIMEOUT_MS = 600_000


class Postgres:
    """One connection to the server's ``postgres`` database, for creating and dropping."""

    def __init__(self) -> None:
        import psycopg

        self._conn: Any = psycopg.connect(
            f"postgresql://{SERVER}/postgres", autocommit=True, connect_timeout=10
        )
        self._conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
        self.prefix = f"zos_bench_{os.getpid()}_"
        self.made: set[str] = set()

    def name(self, label: str) -> str:
        return self.prefix + label.replace("-", "_")

    def url(self, label: str, driver: str = "psycopg") -> str:
        """The SQLAlchemy (and yoyo) URL of the scratch database ``label``."""
        return f"postgresql+{driver}://{SERVER}/{self.name(label)}"

    def libpq(self, label: str) -> str:
        """The plain libpq URL of ``label``, for psycopg and the benchmark's own scripts."""
        return f"postgresql://{SERVER}/{self.name(label)}"

    def create(self, label: str, template: str | None = None) -> str:
        """(Re)create the empty database ``label``, or a copy of the database ``template``."""
        self.drop(label)
        name = self.name(label)
        copy = f" TEMPLATE {self.name(template)} STRATEGY FILE_COPY" if template else ""
        self._conn.execute(f'CREATE DATABASE "{name}"{copy}')
        self.made.add(name)
        return self.url(label)

    def drop(self, label: str) -> None:
        name = self.name(label)
        self._conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.made.discard(name)

    def execute(self, label: str, *statements: str) -> list[tuple[Any, ...]]:
        """Run ``statements`` in one transaction on ``label``; the rows of the last one."""
        import psycopg

        with psycopg.connect(self.libpq(label), connect_timeout=10) as conn:
            rows: list[tuple[Any, ...]] = []
            for statement in statements:
                cursor = conn.execute(statement)
                rows = cursor.fetchall() if cursor.description else []
            return rows

    def tables(self, label: str) -> int:
        """Tables in ``public`` other than each tool's bookkeeping."""
        rows = self.execute(
            label,
            "SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename NOT LIKE '\\_schema%' AND tablename != 'alembic_version' "
            "AND tablename NOT LIKE '\\_yoyo%' AND tablename NOT LIKE 'yoyo%'",
        )
        return int(rows[0][0])

    def drop_all(self) -> None:
        """Drop every database this run made, and any its earlier crash left under its prefix."""
        for (name,) in self._conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (self.prefix + "%",)
        ).fetchall():
            self._conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._conn.close()


def unavailable() -> str | None:
    """Why the PostgreSQL cases cannot run here, or None when they can."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install -e '.[postgresql]')"
    try:
        psycopg.connect(f"postgresql://{SERVER}/postgres", connect_timeout=5).close()
    except psycopg.Error as error:
        return f"no PostgreSQL at {SERVER}: {str(error).splitlines()[0]}"
    return None


def folder_label(directory: Path) -> str:
    """The scratch database that belongs to a case's folder."""
    return directory.name
