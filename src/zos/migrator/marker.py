"""The ``started`` mark of a migration whose changes cannot commit together with its record
(MariaDB/MySQL, whose DDL commits at once, and ``TRANSACTIONAL = False`` migrations).

The mark is written just before the migration's first statement that may change something,
once the dialect has seen that the statement's table lock can be had: a run stopped, killed or
given up while it waits for that lock has marked nothing, so nothing needs repair. A migration
that changes nothing is marked when it finishes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, exc

from zos.migrator import recorder
from zos.migrator.records import State

if TYPE_CHECKING:
    from zos.migrator.discovery import LoadedMigration
    from zos.migrator.executor import BodyFailed, Executor

# First words of statements that change nothing a repair would have to look at (transaction
# control included: the guard refuses it before it reaches the database).
READS = frozenset(
    {"SELECT", "SHOW", "SET", "WITH", "DESCRIBE", "DESC", "EXPLAIN", "SAVEPOINT", "RELEASE"}
    | {"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "XA"}
)
OWN_TABLES = (recorder.TABLE_NAME, recorder.BACKFILL_TABLE_NAME)


def may_change_something(statement: str) -> bool:
    """Whether ``statement`` may change something other than zos's own bookkeeping tables."""
    stripped = statement.lstrip()
    first = stripped.split(None, 1)[0].upper() if stripped else ""
    return first not in READS and not any(table in statement for table in OWN_TABLES)


class StartedMark:
    """Writes ``migration``'s ``started`` row once, on the executor's connection."""

    def __init__(self, ex: Executor, migration: LoadedMigration) -> None:
        self.ex = ex
        self.migration = migration
        self.written = False
        self.completed = 0

    def write(self) -> None:
        """Write the mark now, in the connection's current transaction, unless written."""
        if self.written:
            return
        self.written = True
        self.ex.record(self.migration, State.STARTED, None)

    @contextmanager
    def before_first_change(self) -> Iterator[None]:
        """Meanwhile, the mark is written just before the first statement that may change
        something, after the dialect's wait for that statement's table lock; statements that
        may change something and completed are counted."""
        conn = self.ex.conn

        def before(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
            if self.written or not may_change_something(statement):
                return
            self.ex.dialect.wait_for_table_lock(conn, statement)
            self.write()

        def after(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
            if may_change_something(statement):
                self.completed += 1

        event.listen(conn, "before_cursor_execute", before)
        event.listen(conn, "after_cursor_execute", after)
        try:
            yield
        finally:
            event.remove(conn, "before_cursor_execute", before)
            event.remove(conn, "after_cursor_execute", after)

    def kept_after_failure(self, failed: BodyFailed) -> bool:
        """After the body failed with ``failed`` and its transaction was rolled back: whether
        a mark stays.

        No mark is stored when none was committed (a mark commits only with the first
        change). A stored mark is removed only when the server itself refused the first
        statement that may change something (no such statement completed, no signal or lost
        connection cut the answer short, where the statement may have completed unseen) and a
        refused statement leaves nothing (the migration ran in a transaction, or the
        database's failed statements leave nothing): then nothing needs repair.
        """
        if not self.written:
            return False
        version = self.migration.script.version
        harmless = self.migration.transactional or self.ex.dialect.failed_statement_leaves_nothing
        refused = (
            failed.signum is None
            and isinstance(failed.error, exc.DBAPIError)
            and not failed.error.connection_invalidated
        )
        try:
            with self.ex.fresh_transaction() as conn:
                if recorder.recorded_state(conn, version) is None:
                    return False
                if (
                    refused
                    and harmless
                    and self.completed == 0
                    and recorder.read_cursor(conn, version) is None
                ):
                    recorder.forget(conn, version)
                    return False
        except Exception:  # the body broke the connection: claim no more than may be true
            return True
        return True
