"""The ``started`` mark of a migration whose changes cannot commit together with its record
(MariaDB/MySQL, whose DDL commits at once, and ``TRANSACTIONAL = False`` migrations).

The mark is written just before the migration's first statement that commits something: in a
transaction, the first that commits at once (DDL; MariaDB "Statements That Cause an Implicit
Commit"), outside one, the first that may change anything. The dialect first locks the tables
that statement will wait for and holds them until it has run: a run stopped, killed or given
up while it waits has marked nothing, and nothing slips in between the mark and the change. A
migration that commits nothing on its own is marked together with its end.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, exc

from zos.migrator import recorder
from zos.migrator.dialects.tablelocks import first_word, tokens
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


# Statements that commit the open transaction at once where DDL is not transactional.
COMMITS_AT_ONCE = frozenset(
    {"ALTER", "CREATE", "DROP", "RENAME", "TRUNCATE", "OPTIMIZE", "ANALYZE", "REPAIR"}
    | {"GRANT", "REVOKE", "LOCK", "UNLOCK", "INSTALL", "UNINSTALL", "FLUSH", "LOAD"}
)


def may_change_something(statement: str) -> bool:
    """Whether ``statement`` may change something other than zos's own bookkeeping tables."""
    return first_word(statement) not in READS and not any(t in statement for t in OWN_TABLES)


def commits_something(statement: str, *, in_transaction: bool) -> bool:
    """Whether ``statement`` commits a change of its own: in a transaction, a statement that
    commits at once (temporary tables excepted, which commit nothing); outside one, any
    statement that may change something."""
    if not may_change_something(statement) or _temporary(statement):
        return False
    return not in_transaction or first_word(statement) in COMMITS_AT_ONCE


def _temporary(statement: str) -> bool:
    found = tokens(statement)
    return len(found) > 1 and found[0][0] in ("CREATE", "DROP") and found[1][0] == "TEMPORARY"


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
    def before_first_change(self, *, in_transaction: bool) -> Iterator[None]:
        """Meanwhile, the mark is written just before the first statement that commits
        something, with that statement's tables locked by the dialect until it has run;
        statements that may change something and completed are counted."""
        conn, dialect = self.ex.conn, self.ex.dialect
        holding = False

        def release() -> None:
            nonlocal holding
            if holding:
                holding = False
                dialect.release_table_locks(conn)

        def before(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
            nonlocal holding
            if self.written:
                if holding and may_change_something(statement):
                    release()  # the statement the locks were for failed and was caught
                return
            if commits_something(statement, in_transaction=in_transaction):
                holding = dialect.hold_table_locks(conn, statement)
                self.write()

        def after(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
            if may_change_something(statement):
                self.completed += 1
                release()

        event.listen(conn, "before_cursor_execute", before)
        event.listen(conn, "after_cursor_execute", after)
        try:
            yield
        finally:
            event.remove(conn, "before_cursor_execute", before)
            event.remove(conn, "after_cursor_execute", after)
            release()

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
