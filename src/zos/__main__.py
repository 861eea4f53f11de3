"""``python -m zos`` and the ``zos`` console script.

Signals are handled before the command's imports, so Ctrl-C or SIGTERM at any instant ends in
one line and the shell's exit code, never a traceback or a silent death.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType


class Stopped(BaseException):
    """SIGINT or SIGTERM outside a migration run (which handles its own)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _stop(signum: int, _frame: FrameType | None) -> None:
    interrupts = sys.modules.get("zos.migrator.interrupts")
    if interrupts is not None and getattr(interrupts, "stopping", False):
        return  # a run is already stopping for an earlier signal: let it finish its line
    raise Stopped(signum)


def run() -> None:
    """Run the ``zos`` command line, and leave without the interpreter's teardown.

    The teardown puts the operating system's signal handling back while it runs, so a second
    Ctrl-C then would kill the process and hide the exit code the command chose; it is also
    a measurable part of a short command's time. Output is flushed, connections were closed by
    the command itself.
    """
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _stop)
    try:
        from zos.cli import main

        main()
        code = 0
    except SystemExit as done:
        code = _exit_code(done.code)
    except Stopped as stopped:
        name = signal.Signals(stopped.signum).name
        sys.stderr.write(f"Error: interrupted by {name}; no migration was running\n")
        code = 128 + stopped.signum
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or 1  # the reader went away (a closed pipe): the output was lost
    os._exit(code)


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    sys.stderr.write(f"{code}\n")
    return 1


if __name__ == "__main__":
    run()
