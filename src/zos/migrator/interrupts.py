"""SIGINT and SIGTERM during a run: stop at once where that is safe, never in the middle of
recording, and cancel the statement the database is running so a long one stops too.

A signal raises ``RunInterrupted`` only inside sections marked interruptible (a migration's
own code, a wait for the run lock); anywhere else it is remembered and raised at the next
``check()``, so a commit and its record are never split by it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Set once a run was interrupted: the process is on its way out, and a second Ctrl-C during
# the clean-up and the last line must not cut them short (see zos.__main__).
stopping = False


class RunInterrupted(BaseException):
    """Raised inside the run when SIGINT or SIGTERM arrives; not an ``Exception``, so a
    migration's own ``except Exception`` cannot swallow it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Interrupts:
    """The signal handling of one run. Without ``installed()`` (not the main thread, or a
    caller that keeps its own handlers) it only marks sections, and a ``KeyboardInterrupt``
    keeps its usual meaning."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.installed_here = False
        self._interruptible = 0
        self._raised = False
        self._cancel: Callable[[], None] | None = None
        self._cancel_lock = threading.Lock()

    @contextlib.contextmanager
    def installed(self) -> Iterator[Interrupts]:
        """Handle SIGINT and SIGTERM for the body's duration (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {signum: signal.getsignal(signum) for signum in _SIGNALS}
        reader, writer = os.pipe()
        os.set_blocking(writer, False)
        old_wakeup = signal.set_wakeup_fd(writer, warn_on_full_buffer=False)
        # The C-level handler writes the signal's number to the pipe at once, even while the
        # main thread is inside a long database call that Python's handler must wait for.
        watcher = threading.Thread(target=self._watch, args=(reader,), daemon=True)
        watcher.start()
        for signum in _SIGNALS:
            signal.signal(signum, self._handle)
        self.installed_here = True
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            signal.set_wakeup_fd(old_wakeup)
            os.close(writer)  # the watcher reads end-of-file and stops
            watcher.join(timeout=5)
            os.close(reader)
            self.installed_here = False

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        global stopping
        stopping = True
        if self.signum is None:
            self.signum = signum
        if self._interruptible and not self._raised:
            self._raised = True
            # The statement may still run on the server when Python code is what the signal
            # stopped (a pure-Python driver waiting on its socket): cancel it before leaving.
            self._cancel_once()
            raise RunInterrupted(self.signum)

    def _watch(self, reader: int) -> None:
        while True:
            try:
                data = os.read(reader, 64)
            except OSError:
                return
            if not data:
                return
            if self._interruptible and any(b in _SIGNALS for b in data):
                self._cancel_once()

    def _cancel_once(self) -> None:
        """Cancel the running statement, once per section: a second cancel could stop the
        clean-up's own statement."""
        with self._cancel_lock:
            cancel, self._cancel = self._cancel, None
        if cancel is not None:
            with contextlib.suppress(Exception):
                cancel()

    @contextlib.contextmanager
    def interruptible(self, cancel: Callable[[], None] | None = None) -> Iterator[None]:
        """A section that a signal may stop at once; ``cancel`` stops a running statement."""
        self.check()
        self._interruptible += 1
        with self._cancel_lock:
            self._cancel = cancel
        try:
            yield
        finally:
            self._interruptible -= 1
            with self._cancel_lock:
                self._cancel = None

    def check(self) -> None:
        """Raise ``RunInterrupted`` if a signal arrived outside an interruptible section."""
        if self.signum is not None and not self._raised:
            self._raised = True
            raise RunInterrupted(self.signum)

    def as_interruption(self, error: BaseException) -> int | None:
        """The signal ``error`` stands for, or None when it is a migration's own failure.

        With handlers installed a signal arrives as ``RunInterrupted``, so a
        ``KeyboardInterrupt`` can only be one the migration raised itself; without them it is
        the terminal's Ctrl-C.
        """
        if isinstance(error, RunInterrupted):
            return error.signum
        if self._raised:
            return self.signum  # raised inside the driver, then wrapped by what caught it
        if isinstance(error, KeyboardInterrupt) and not self.installed_here:
            return int(signal.SIGINT)
        return None
