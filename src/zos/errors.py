"""The exceptions zos raises for an operator to read, and the exit code each one means.

Imports nothing from zos. Anything that is not a ``ZosError`` is a bug and keeps its traceback.
"""

from __future__ import annotations


class ZosError(Exception):
    """Base of every error an operator can fix; the message says what to do next."""

    exit_code = 1

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = list(details or [])


class ConfigError(ZosError):
    """The configuration file or the environment holds something zos cannot use."""

    exit_code = 2


class DatabaseUnavailable(ZosError):
    """The database cannot be reached or opened."""


class MigrationFileError(ZosError):
    """A migration file is misnamed, duplicated, unreadable or missing what it must define."""


class MigrationHistoryError(ZosError):
    """The applied history does not fit the files: edited, missing, out of order, or ahead."""


class MigrationFailed(ZosError):
    """A migration raised while running; says which, why, and the state left behind."""


class LockTimeout(ZosError):
    """Another migration held the lock for longer than the configured timeout."""


class SchemaNotCurrent(ZosError):
    """The database does not match the code: pending, newer, unfinished or edited migrations."""


class UsageError(ZosError):
    """A command was asked for something that cannot be done, such as an unknown target."""

    exit_code = 2


class RunInProgress(ZosError):
    """Another process holds the run lock, so a command that must run alone refuses."""


class Interrupted(ZosError):
    """SIGINT or SIGTERM stopped a run; the message says what state the database is in.

    The exit code is the shell's for the signal: 130 for SIGINT, 143 for SIGTERM.
    """

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum
