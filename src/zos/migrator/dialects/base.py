"""What the runner needs from a database, as one protocol: the run lock, the migration's
transaction and its guards, foreign-key suspension, autocommit, cancelling a statement, and
durability. Each database implements it in its own module; nothing else branches on the database.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Protocol

from zos.errors import LockTimeout

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

    from zos.migrator.dialects.lockwaits import Blocked, LockWaitWatch

LOCK_NAME = "zos_migrate"
# What became of a transaction that a migration's body left (see ``Dialect.left_transaction``).
ROLLED_BACK = "rolled back"
MAYBE_COMMITTED = "may be committed"
# How often a waiting runner tries the run lock again.
POLL_SECONDS = 0.05


class RunLock(Protocol):
    """The lock one migration run holds from before it reads the history until it ends.

    The operating system or the server releases it when the holding process dies.
    """

    def try_acquire(self) -> bool:
        """Take the lock if it is free; never waits."""
        ...

    def holder(self) -> str | None:
        """Who holds it, as "pid 4711 on host h" or the server's words; None when unknown."""
        ...

    def note(self, activity: str) -> None:
        """Tell waiters and ``status`` what the holder is doing ("002 is running now")."""
        ...

    def ensure_held(self) -> None:
        """Raise ``LockTimeout`` if the lock was lost (its session ended under the runner)."""
        ...

    def release(self) -> None:
        """Release the lock; safe to call when it is not held or its connection is gone."""
        ...


class Watch(Protocol):
    """What the database saw a migration's body do."""

    def might_orphan(self) -> bool:
        """Whether, with foreign keys suspended, the body could have left a row pointing nowhere."""
        ...


class Dialect(Protocol):
    """One database's way of doing what the runner needs."""

    name: str
    # Whether DDL rolls back with the transaction, so a migration and its record can be atomic.
    transactional_ddl: bool
    # Whether a statement that fails (a lock wait given up, a cancel) leaves nothing behind, even
    # outside a transaction; PostgreSQL's CREATE INDEX CONCURRENTLY leaves an invalid index.
    failed_statement_leaves_nothing: bool

    def run_lock(self, engine: Engine) -> RunLock:
        """A run lock for the database ``engine`` points at (not yet taken)."""
        ...

    def prepare(self, conn: Connection) -> None:
        """Set up the runner's connection once: how it begins transactions, what it caches."""
        ...

    def foreign_keys_suspended(self, conn: Connection) -> AbstractContextManager[None]:
        """Run the body with foreign-key enforcement off where a table rebuild needs it."""
        ...

    def watch(self, conn: Connection) -> AbstractContextManager[Watch]:
        """Deny transaction control to the body where the database allows it, and observe it."""
        ...

    def broken_foreign_keys(self, conn: Connection, watch: Watch) -> str | None:
        """A sentence about rows left pointing nowhere, or None; only where enforcement was off."""
        ...

    def autocommit(self, conn: Connection) -> AbstractContextManager[None]:
        """Each statement of the body commits on its own (for ``TRANSACTIONAL = False``)."""
        ...

    def transaction_identity(self, conn: Connection) -> object:
        """Something that changes when the current transaction ends and another begins."""
        ...

    def left_transaction(
        self, engine: Engine, conn: Connection, identity: object, *, failed: bool
    ) -> str | None:
        """None while ``conn`` is still in the transaction ``identity`` was taken in; else
        ``ROLLED_BACK`` or ``MAYBE_COMMITTED``: what became of it."""
        ...

    def after_body(self, conn: Connection) -> None:
        """Undo what a migration's body set for the session (search path, defaults), inside
        its transaction, so the record and the next migration run with the runner's session."""
        ...

    def run_holder(self, conn: Connection) -> str | None:
        """Who holds the run lock now, read without taking it; None when no run is on."""
        ...

    def rehearsal_mark(self, conn: Connection) -> object:
        """In a rehearsal, before a migration runs: what ``as_if_committed`` compares the
        transaction with once it has run, to see what it did (None where nothing is compared)."""
        ...

    def as_if_committed(self, conn: Connection, before: object) -> str | None:
        """In a rehearsal, which runs every migration in one transaction, do to ``conn``'s
        transaction what the commit of the migration that just ran would do for the ones after
        it: check what was deferred to the commit (raising the database's error, as the commit
        would), and leave the next migration the state a new transaction starts in, in the
        session the real run gives it (``restore_session``'s, as far as a transaction allows).
        ``before`` is ``rehearsal_mark``'s, taken before the migration ran.

        Returns why later migrations cannot be rehearsed after this one (it did something
        that later statements see only once it is committed), or None.
        """
        ...

    def cancel(self, engine: Engine, conn: Connection) -> None:
        """Stop the statement ``conn`` is running; called from another thread."""
        ...

    def durable(self, conn: Connection) -> AbstractContextManager[None]:
        """Cheap commits during the run, and everything synced to disk when it ends."""
        ...

    def restore_session(self, conn: Connection) -> None:
        """Give ``conn`` back the session state it had when ``prepare`` first saw it (search
        path, current database), whatever a migration changed. Call between transactions."""
        ...

    def bounded_lock_waits(self, conn: Connection, seconds: float) -> AbstractContextManager[None]:
        """Every lock ``conn`` asks for meanwhile is waited for at most ``seconds``, then the
        statement fails with an error ``is_lock_timeout`` recognises. Call between transactions."""
        ...

    def bound_lock_waits_here(self, conn: Connection, seconds: float) -> None:
        """Like ``bounded_lock_waits`` for the transaction ``conn`` is in, and no longer (safe
        through a transaction pooler); a no-op where the database has no such setting."""
        ...

    def is_lock_timeout(self, error: BaseException) -> bool:
        """Whether ``error`` (or what it was raised from) is a lock wait that gave up."""
        ...

    def hold_table_locks(self, conn: Connection, statement: str) -> bool:
        """Before a migration's ``started`` mark is written in front of ``statement``, lock the
        tables ``statement`` will wait for (and the version table), bounded like the
        statement, so that a run stopped or given up while it waits has marked nothing and
        nothing slips in between the mark and the change. Returns whether locks are held
        (release them with ``release_table_locks`` once the statement has run). False where
        the mark commits together with the statement.

        Raises:
            sqlalchemy.exc.DBAPIError: the wait gave up (``is_lock_timeout``) or was cancelled.
            ZosError: the database user may not take such locks.
        """
        ...

    def release_table_locks(self, conn: Connection) -> None:
        """Release what ``hold_table_locks`` took; quiet when the connection is gone."""
        ...

    def watch_lock_waits(
        self,
        engine: Engine,
        conn: Connection,
        seconds: float,
        on_blocked: Callable[[Blocked], None],
    ) -> AbstractContextManager[LockWaitWatch | None]:
        """Meanwhile, ``on_blocked`` is told once what ``conn`` waits for (locks bounded at
        ``seconds``); the watch's ``last`` is the newest finding. None where the database has
        no such waits to watch."""
        ...


def acquire(
    lock: RunLock,
    timeout: float,
    on_wait: Callable[[str | None], None],
) -> None:
    """Take ``lock``, waiting up to ``timeout`` seconds; ``on_wait`` is told once who holds it.

    Raises:
        LockTimeout: another runner still held the lock after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    if lock.try_acquire():
        return
    on_wait(lock.holder())
    while time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        if lock.try_acquire():
            return
    holder = lock.holder()
    held_by = f" (held by {holder})" if holder else ""
    raise LockTimeout(
        f"another migration run still holds the lock after {timeout:g} s{held_by}; wait for "
        "it to finish, or raise database.lock_timeout_seconds"
    )


def this_process() -> str:
    """How a holder names itself: "pid 4711 on host h"."""
    return f"pid {os.getpid()} on host {socket.gethostname()}"


@contextmanager
def nothing() -> Iterator[None]:
    yield
