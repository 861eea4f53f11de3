"""Applies one loaded migration with the strategy its kind needs and returns what happened.

Every strategy runs a migration's own code through ``Executor.run_body``: the transaction
discipline, the dialect's watch, interrupts, and one translation of whatever the code raised
(``BaseException`` included) into a ``MigrationFailed`` or an ``Interrupted`` that says what
state the database is in.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, exc

from zos.errors import Interrupted, MigrationFailed, ZosError
from zos.migrator import recorder
from zos.migrator.dialects.base import MAYBE_COMMITTED, ROLLED_BACK, Dialect, RunLock
from zos.migrator.discovery import LoadedMigration
from zos.migrator.events import EventCallback, EventKind, MigrationEvent
from zos.migrator.guard import failure_reason, owned_transaction
from zos.migrator.interrupts import Interrupts
from zos.migrator.records import State

if TYPE_CHECKING:
    import signal as _signal  # noqa: F401

# What became of a migration's transaction whose connection was lost while it committed: the
# server committed all of it or none of it, and the answer never came.
LOST_AT_COMMIT = "lost at commit"


class BodyFailed(Exception):
    """A migration's own code failed; ``left`` says what became of its transaction."""

    def __init__(self, error: BaseException, left: str | None, signum: int | None) -> None:
        super().__init__(str(error))
        self.error = error
        self.left = left
        self.signum = signum

    @property
    def reason(self) -> str:
        return failure_reason(self.error)


@dataclass(frozen=True)
class Outcome:
    """What applying one migration did."""

    version: int
    kind: EventKind  # APPLIED or ADOPTED
    duration_ms: int


@dataclass
class Executor:
    """Runs migrations on one connection that nothing else uses meanwhile, under the run lock."""

    conn: Connection
    engine: Engine
    dialect: Dialect
    lock: RunLock
    on_event: EventCallback
    interrupts: Interrupts
    current_version: int  # the newest finished version, kept up to date as the run goes
    ddl_lock_timeout_seconds: float = 5.0  # database.ddl_lock_timeout_seconds (lockwait)
    # Bookkeeping still to create (the version table of a fresh database): done inside the
    # first atomic migration's transaction, so a fresh database takes one commit, not two.
    prelude: Callable[[Connection], None] | None = None

    def run_prelude_alone(self) -> None:
        """Create what ``prelude`` creates in a transaction of its own, if still pending."""
        if self.prelude is not None:
            with self.conn.begin():
                self.prelude(self.conn)
            self.prelude = None

    def apply(self, migration: LoadedMigration) -> Outcome:
        """Apply ``migration`` with the strategy its kind needs.

        Raises:
            MigrationFailed: its code raised, broke a foreign key, or left its transaction.
            Interrupted: SIGINT or SIGTERM arrived while it ran.
            MigrationHistoryError: another process changed the history under the run lock.
        """
        from zos.migrator import strategies
        from zos.migrator.lockwait import apply_bounded

        self.interrupts.check()
        self.lock.ensure_held()
        self.lock.note(f"{migration.script.version:03d} is running now")
        if migration.batches is not None:
            strategy = strategies.apply_backfill
        elif self.dialect.transactional_ddl and migration.transactional:
            strategy = strategies.apply_atomically
        else:
            strategy = strategies.apply_with_marker
        if strategy is not strategies.apply_atomically:
            self.run_prelude_alone()
        duration = apply_bounded(self, migration, lambda: strategy(self, migration))
        self.current_version = max(self.current_version, migration.script.version)
        self.emit(EventKind.APPLIED, migration, duration)
        return Outcome(migration.script.version, EventKind.APPLIED, duration)

    def adopt(self, migration: LoadedMigration) -> Outcome | None:
        """Record ``migration`` without running it when its ``check()`` finds it present."""
        if migration.check is None:
            return None
        check = migration.check
        self.run_prelude_alone()
        present: list[bool] = []
        try:
            with self.migration_transaction():
                recorder.ensure_unrecorded(self.conn, migration.script.version)
                self.run_body(migration, lambda: present.append(bool(check(self.conn))))
                if present[0]:
                    self.record(migration, State.ADOPTED, None)
        except BodyFailed as failed:
            rollback_quietly(self.conn)
            if failed.left == LOST_AT_COMMIT:
                state = (
                    "the connection was lost while its adoption was recorded; 'zos db status' "
                    "says whether it was"
                )
            elif present:
                state = "its check() found it present, but it could not be recorded as adopted"
            else:
                state = "its check() failed, so nothing was adopted or changed"
            raise self.failure(migration, failed, state) from failed.error
        if not present[0]:
            return None
        self.current_version = max(self.current_version, migration.script.version)
        self.emit(EventKind.ADOPTED, migration)
        return Outcome(migration.script.version, EventKind.ADOPTED, 0)

    def run_body(
        self,
        migration: LoadedMigration,
        body: Callable[[], None],
        *,
        in_transaction: bool = True,
        batch: bool = False,
    ) -> None:
        """Run a migration's own code under the transaction discipline and the dialect's watch.

        Raises:
            BodyFailed: the code raised anything, broke a foreign key (SQLite), or ended the
                transaction it was given; ``left`` then says what became of that transaction.
        """
        conn = self.conn
        # Where DDL commits at once, only a batch (data alone) can be told to have escaped.
        watched = in_transaction and (batch or self.dialect.transactional_ddl)
        identity = self.dialect.transaction_identity(conn) if watched else None
        try:
            with contextlib.ExitStack() as stack:
                if in_transaction:
                    watch = stack.enter_context(self.dialect.watch(conn))
                    stack.enter_context(owned_transaction(conn))
                stack.enter_context(self.interrupts.interruptible(self._canceller()))
                body()
            if _broken(conn):
                raise RuntimeError("upgrade() closed or invalidated the connection zos runs it on")
            self.dialect.after_body(conn)
            if in_transaction:
                left = self.dialect.left_transaction(self.engine, conn, identity, failed=False)
                if left is not None:
                    raise BodyFailed(
                        RuntimeError(
                            "upgrade() ended the transaction zos runs it in (a COMMIT or "
                            "ROLLBACK reached the database)"
                        ),
                        left,
                        None,
                    )
                broken = self.dialect.broken_foreign_keys(conn, watch)
                if broken:
                    raise BodyFailed(RuntimeError(broken), None, None)
        except BodyFailed:
            raise
        except BaseException as error:  # a migration's code may raise anything at all
            left = None
            if in_transaction:
                with contextlib.suppress(Exception):
                    left = self.dialect.left_transaction(self.engine, conn, identity, failed=True)
            raise BodyFailed(error, left, self.interrupts.as_interruption(error)) from error

    def _canceller(self) -> Callable[[], None]:
        return lambda: self.dialect.cancel(self.engine, self.conn)

    def failure(
        self, migration: LoadedMigration, failed: BodyFailed, state: str
    ) -> MigrationFailed | Interrupted:
        """The error that ends the run, naming the migration and the state it left."""
        name = migration.script.name
        if failed.signum is not None:
            import signal

            signame = signal.Signals(failed.signum).name
            return Interrupted(
                f"interrupted by {signame} during {name}: {state}; the database is at version "
                f"{self.current_version}",
                failed.signum,
            )
        # The same version 'zos db status' calls current: the newest finished one.
        return MigrationFailed(
            f"{name} failed: {failed.reason}; {state}; the database is at version "
            f"{self.current_version}"
        )

    def rolled_back_or_marked(self, migration: LoadedMigration, failed: BodyFailed) -> str:
        """After an atomic attempt failed and was rolled back: the state it leaves, and a
        ``started`` mark when part of it was committed by the migration itself."""
        if failed.left == LOST_AT_COMMIT:
            return (
                "the connection was lost while it committed, so it is either applied and "
                "recorded or rolled back (the two commit together); 'zos db status' says which"
            )
        if failed.left != MAYBE_COMMITTED:
            return "it was rolled back and the database is unchanged by it"
        with self.fresh_transaction() as conn:
            recorder.record(
                conn,
                version=migration.script.version,
                description=migration.description,
                checksum=migration.script.checksum,
                state=State.STARTED,
            )
        return (
            "it committed part of its work itself, outside zos's transaction, so the database "
            "may be partly changed; it is marked unfinished: check the schema by hand, then "
            f"run 'zos db repair --applied {migration.script.version}' or "
            f"'zos db repair --forget {migration.script.version}'"
        )

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A transaction on the run's connection whose rollback after a failure never hides
        that failure (a connection the server dropped cannot roll back)."""
        transaction = self.conn.begin()
        try:
            yield self.conn
            # Never commit without the run lock: its session may have ended under the run.
            self.lock.ensure_held()
        except BaseException:
            rollback_quietly(self.conn)
            raise
        transaction.commit()

    @contextlib.contextmanager
    def migration_transaction(self) -> Iterator[Connection]:
        """``transaction()`` for a migration's own work: what zos's statements in it (its
        record) or its commit raise, such as a deferred constraint, a serialization failure or
        a refused record, fails the migration as its code would, as a ``BodyFailed``.

        Raises:
            BodyFailed: ``left`` is ``LOST_AT_COMMIT`` when the connection was lost while it
                committed, else None (rolled back, by the server or by the rollback here).
        """
        transaction = self.conn.begin()
        try:
            yield self.conn
            self.lock.ensure_held()
        except exc.DBAPIError as error:
            rollback_quietly(self.conn)
            raise BodyFailed(error, None, None) from error
        except BaseException:
            rollback_quietly(self.conn)
            raise
        try:
            transaction.commit()
        except exc.DBAPIError as error:
            rollback_quietly(self.conn)
            left = LOST_AT_COMMIT if error.connection_invalidated else None
            raise BodyFailed(error, left, None) from error

    @contextlib.contextmanager
    def fresh_transaction(self) -> Iterator[Connection]:
        """A transaction on the run's connection, or on a new one when the migration broke it."""
        try:
            usable = not self.conn.invalidated and not self.conn.closed
            if usable and self.conn.in_transaction():
                self.conn.rollback()
        except exc.SQLAlchemyError:
            usable = False
        if usable:
            with self.conn.begin():
                yield self.conn
            return
        with contextlib.suppress(exc.SQLAlchemyError):
            self.conn.invalidate()
        with self.engine.connect() as other:
            self.dialect.prepare(other)
            with other.begin():
                yield other

    def record(self, migration: LoadedMigration, state: State, duration: int | None) -> None:
        recorder.record(
            self.conn,
            version=migration.script.version,
            description=migration.description,
            checksum=migration.script.checksum,
            state=state,
            duration_ms=duration,
        )

    def emit(
        self,
        kind: EventKind,
        migration: LoadedMigration,
        duration_ms: int | None = None,
        *,
        rows_done: int | None = None,
        rows_total: int | None = None,
    ) -> None:
        self.on_event(
            MigrationEvent(
                kind,
                migration.script.version,
                migration.description,
                duration_ms,
                rows_done=rows_done,
                rows_total=rows_total,
            )
        )


def _broken(conn: Connection) -> bool:
    if conn.invalidated or conn.closed:
        return True
    try:
        return not conn.connection.is_valid
    except exc.SQLAlchemyError:
        return True


def elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def rollback_quietly(conn: Connection) -> None:
    """Roll back whatever ``conn`` holds; a connection the migration broke is dropped instead."""
    try:
        if not conn.invalidated and not conn.closed and conn.in_transaction():
            conn.rollback()
    except (exc.SQLAlchemyError, ZosError):
        with contextlib.suppress(exc.SQLAlchemyError):
            conn.invalidate()


__all__ = [
    "LOST_AT_COMMIT",
    "ROLLED_BACK",
    "BodyFailed",
    "Executor",
    "Outcome",
    "elapsed_ms",
    "rollback_quietly",
]
