"""Version 1 as the frozen ``001_initial.py`` defines it: what tests of the initial migration
compare with, so a later migration (and its columns in ``zos.schema``) leaves them green."""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

from sqlalchemy import MetaData

INITIAL = Path(__file__).parents[1] / "src" / "zos" / "migrations" / "001_initial.py"


@cache
def initial_metadata() -> MetaData:
    """The ``_metadata`` of 001: the version-1 tables, without the application's defaults."""
    spec = importlib.util.spec_from_file_location("zos_tests_initial", INITIAL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    metadata = module._metadata
    assert isinstance(metadata, MetaData)
    return metadata
