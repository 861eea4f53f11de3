"""zos's pytest plugin, registered through the ``pytest11`` entry point: only its options.

The checks of ``zos db verify`` become tests when a project opts in with one line in its
``conftest.py``: ``pytest_plugins = ["zos.testing.verify"]`` (see ``zos.testing.verify``).
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("zos", "zos migrations")
    group.addoption(
        "--zos-backend",
        action="append",
        default=[],
        metavar="URL",
        help="A database server on which zos.testing.verify checks migrations (repeatable); "
        "each test run creates and drops scratch databases there.",
    )
    parser.addini(
        "zos_backends",
        type="linelist",
        default=[],
        help="Database server URLs for zos.testing.verify, besides a temporary SQLite file.",
    )
    parser.addini(
        "zos_migrations_dir",
        type="string",
        default="",
        help="The migrations folder zos.testing.verify checks (default: zos's own).",
    )
    parser.addini(
        "zos_metadata",
        type="string",
        default="",
        help="package.module:attribute of the MetaData the newest schema must match "
        "(imported from the rootdir; default: zos.database.metadata).",
    )
