"""Migrating an empty database to the newest version gives exactly ``zos.database.metadata``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, inspect

from tests.conftest import Backend
from zos import migrator
from zos.database import metadata


def snapshot(engine: Engine) -> dict[str, dict[str, Any]]:
    """Everything reflection reports about each table, in comparable form."""
    inspector = inspect(engine)
    dialect = engine.dialect
    tables: dict[str, dict[str, Any]] = {}
    for table in sorted(inspector.get_table_names()):
        if table == "_schema_version":
            continue
        tables[table] = {
            "columns": [
                (c["name"], str(c["type"].compile(dialect=dialect)), c["nullable"])
                for c in inspector.get_columns(table)
            ],
            "primary_key": inspector.get_pk_constraint(table)["constrained_columns"],
            "foreign_keys": sorted(
                (
                    fk["name"],
                    tuple(fk["constrained_columns"]),
                    fk["referred_table"],
                    tuple(fk["referred_columns"]),
                )
                for fk in inspector.get_foreign_keys(table)
            ),
            "indexes": sorted(
                (ix["name"], tuple(ix["column_names"]), bool(ix["unique"]))
                for ix in inspector.get_indexes(table)
            ),
            "checks": sorted(
                (ck["name"], " ".join(ck["sqltext"].split()))
                for ck in inspector.get_check_constraints(table)
            ),
        }
    return tables


def test_migrating_an_empty_database_gives_exactly_the_metadata_schema(backend: Backend) -> None:
    """The frozen 001 and every later migration must add up to the live table definitions."""
    migrator.migrate(backend.settings())
    reference = backend.sibling()
    reference_engine = reference.engine()
    metadata.create_all(reference_engine)
    migrated_engine = backend.engine()
    try:
        migrated, expected = snapshot(migrated_engine), snapshot(reference_engine)
    finally:
        migrated_engine.dispose()
        reference_engine.dispose()
    assert sorted(expected) == sorted(metadata.tables)
    for table in expected:
        assert migrated[table] == expected[table], table
    assert migrated == expected
