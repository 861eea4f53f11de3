"""A signal never splits a commit from its record: outside an interruptible section it waits
for the next check; inside one it stops the code at once and cancels the running statement."""

from __future__ import annotations

import signal
import sqlite3
import threading

import pytest

from zos.migrator.interrupts import Interrupts, RunInterrupted


def test_a_signal_outside_an_interruptible_section_waits_for_the_next_check() -> None:
    interrupts = Interrupts()
    with interrupts.installed():
        signal.raise_signal(signal.SIGTERM)  # as if it arrived while a commit was written
        with pytest.raises(RunInterrupted) as stopped:
            interrupts.check()
    assert stopped.value.signum == signal.SIGTERM


def test_a_signal_during_a_long_statement_cancels_it_and_stops_the_section() -> None:
    """The statement would run for hours; the signal's watcher cancels it at once."""
    interrupts = Interrupts()
    database = sqlite3.connect(":memory:", check_same_thread=False)
    endless = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1e12)"
        " SELECT count(*) FROM c"
    )
    main = threading.main_thread().ident
    assert main is not None
    timer = threading.Timer(0.3, signal.pthread_kill, (main, signal.SIGINT))
    with interrupts.installed(), pytest.raises(RunInterrupted) as stopped:  # noqa: SIM117
        with interrupts.interruptible(cancel=database.interrupt):
            timer.start()
            database.execute(endless).fetchall()
    timer.join()
    assert stopped.value.signum == signal.SIGINT


def test_the_previous_handlers_are_back_after_the_run() -> None:
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with Interrupts().installed():
        pass
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_a_keyboard_interrupt_is_the_migrations_own_failure_when_signals_are_handled() -> None:
    interrupts = Interrupts()
    with interrupts.installed():
        assert interrupts.as_interruption(KeyboardInterrupt()) is None
    assert interrupts.as_interruption(KeyboardInterrupt()) == signal.SIGINT
