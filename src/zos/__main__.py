"""``python -m zos`` and the ``zos`` console script.

Signals are handled before the command's imports, so Ctrl-C or SIGTERM at any instant ends in
one line and the shell's exit code, never a traceback or a silent death.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType


class Stopped(BaseException):
    """SIGINT or SIGTERM outside a migration run (which handles its own)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _stop(signum: int, _frame: FrameType | None) -> None:
    raise Stopped(signum)


def run() -> None:
    """Run the ``zos`` command line."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _stop)
    try:
        from zos.cli import main

        main()
    except Stopped as stopped:
        name = signal.Signals(stopped.signum).name
        sys.stderr.write(f"Error: interrupted by {name}; no migration was running\n")
        sys.exit(128 + stopped.signum)


if __name__ == "__main__":
    run()
