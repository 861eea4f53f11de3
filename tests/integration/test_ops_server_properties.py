"""Property test on PostgreSQL and MariaDB: over generated tables and rows, one random helper
call either changes exactly what it was asked (every other column's catalog entry and value
unchanged) or fails with the table as it was. Fixed seed, bounded examples."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal, InvalidOperation
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, Integer, Numeric, String, Text, exc

from tests.conftest import Backend
from zos.migrator import ops
from zos.migrator.ops.mysql import column_definition

EXAMPLES = 100
TYPES = ["INT", "VARCHAR(10)", "VARCHAR(40)", "TEXT", "NUMERIC(8, 2)"]
DEFAULTS = {
    "INT": ["0", "-3"],
    "VARCHAR(10)": ["'a:b'", "'5%'"],
    "VARCHAR(40)": ["'it''s'", "':x %'"],
    "TEXT": ["'t'"],
    "NUMERIC(8, 2)": ["1.5"],
}
VALUES = {
    "INT": st.integers(-100, 100),
    "VARCHAR(10)": st.sampled_from(["", "a:b", "100%", "it's", "12", "007", " 12", "ab   "]),
    "VARCHAR(40)": st.sampled_from(["abcdefghijklmno", ":name", "%s", "7"]),
    "TEXT": st.sampled_from(["x", "{}", "3"]),
    "NUMERIC(8, 2)": st.sampled_from(["1.25", "3.00", "-2.50"]),
}
OUTCOMES: Counter[str] = Counter()


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[tuple[str, str, bool, str | None]], list[Any], Any]:
    types = draw(st.lists(st.sampled_from(TYPES), min_size=2, max_size=4))
    columns = []
    for k, kind in enumerate(types):
        default = draw(st.one_of(st.none(), st.sampled_from(DEFAULTS[kind])))
        columns.append((f"c{k}", kind, draw(st.booleans()), default))
    rows = draw(
        st.lists(
            st.tuples(*[st.one_of(st.none(), VALUES[kind]) for _, kind, _, _ in columns]),
            max_size=5,
        )
    )
    target = draw(st.sampled_from([name for name, _, _, _ in columns]))
    action = draw(st.sampled_from(["nullable", "default", "type", "type+default", "check", "drop"]))
    if action == "nullable":
        call = ("alter_column", (target,), {"nullable": draw(st.booleans())})
    elif action == "default":
        value = draw(st.sampled_from([None, "'100%'", "'a:1'", "7"]))
        call = ("alter_column", (target,), {"server_default": value})
    elif action.startswith("type"):
        new = draw(st.sampled_from([Integer(), String(5), String(60), Text(), Numeric(10, 1)]))
        options: dict[str, Any] = {"type_": new}
        if action == "type+default":
            options["server_default"] = draw(st.sampled_from([None, "'9'"]))
        call = ("alter_column", (target,), options)
    elif action == "check":
        call = ("add_check", ("ck_gen", f"{target} IS NULL OR {target} <> '%:x'"), {})
    else:
        call = ("drop_column", (target,), {})
    return columns, rows, call


def catalog(conn: Connection, dialect: str) -> dict[str, Any]:
    """Each column's definition as the server reports it."""
    if dialect == "mariadb":
        create = str(conn.exec_driver_sql("SHOW CREATE TABLE g").one()[1])
        names = [str(r[0]) for r in conn.exec_driver_sql("SHOW COLUMNS FROM g")]
        return {name: column_definition(create, name) for name in names}
    rows = conn.exec_driver_sql(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,"
        " pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a LEFT JOIN pg_attrdef d"
        " ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
        " WHERE a.attrelid = 'g'::regclass AND a.attnum > 0 AND NOT a.attisdropped"
    )
    return {str(r[0]): tuple(r[1:]) for r in rows}


def values(conn: Connection) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in conn.exec_driver_sql("SELECT * FROM g ORDER BY id")]


def same_value(old: Any, new: Any) -> bool:
    """Whether a converted value comes back the same: equal as numbers when both were
    numbers (3.00 and 3), otherwise equal as text ('12' and 12, never '007' and 7)."""
    if old is None or new is None:
        return old is new
    if isinstance(old, str) or isinstance(new, str):
        return str(old) == str(new)
    try:
        return Decimal(str(old)) == Decimal(str(new))
    except InvalidOperation:
        return str(old) == str(new)


def run_example(engine: Engine, dialect: str, scenario: Any) -> None:
    columns, rows, (helper, args, options) = scenario
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS g")
        definitions = ["id INT PRIMARY KEY"] + [
            f"{name} {kind}{'' if null else ' NOT NULL'}"
            + ("" if default is None else f" DEFAULT {default}")
            for name, kind, null, default in columns
        ]
        conn.exec_driver_sql(
            f"CREATE TABLE g ({', '.join(definitions)})",
            execution_options={"no_parameters": True},
        )
        placeholders = ", ".join(["%s"] * (len(columns) + 1))
        for key, row in enumerate(rows):
            if any(v is None and not null for v, (_, _, null, _) in zip(row, columns, strict=True)):
                continue
            conn.exec_driver_sql(f"INSERT INTO g VALUES ({placeholders})", (key, *row))
    with engine.connect() as conn:
        before_catalog, before_values = catalog(conn, dialect), values(conn)
    try:
        with engine.begin() as conn:
            getattr(ops, helper)(conn, "g", *args, **options)
    except (ops.Refused, exc.DBAPIError) as error:
        OUTCOMES[f"refused: {type(error).__name__}"] += 1
        with engine.connect() as conn:
            assert catalog(conn, dialect) == before_catalog
            assert values(conn) == before_values
        return
    OUTCOMES[f"applied: {helper}"] += 1
    with engine.connect() as conn:
        after_catalog, after_values = catalog(conn, dialect), values(conn)
    changed = args[0] if helper in ("alter_column", "drop_column") else None
    assert {k: v for k, v in after_catalog.items() if k != changed} == {
        k: v for k, v in before_catalog.items() if k != changed
    }
    names = list(before_catalog)
    kept = [i for i, name in enumerate(names) if name != changed]
    after_names = list(after_catalog)
    assert [tuple(row[after_names.index(names[i])] for i in kept) for row in after_values] == [
        tuple(row[i] for i in kept) for row in before_values
    ]
    if helper == "alter_column" and "type_" in options:
        old_column, new_column = names.index(changed), after_names.index(changed)
        for old_row, new_row in zip(before_values, after_values, strict=True):
            assert same_value(old_row[old_column], new_row[new_column]), (old_row, new_row)
    if helper == "drop_column":
        assert changed not in after_catalog
    if helper == "alter_column" and "nullable" in options:
        if dialect == "mariadb":
            assert ("NOT NULL" in after_catalog[changed]) == (not options["nullable"])
        else:
            assert after_catalog[changed][1] == (not options["nullable"])
    if helper == "alter_column" and "type_" not in options and "server_default" in options:
        new_default = options["server_default"]
        if dialect == "postgresql":
            shown = after_catalog[changed][2]
            assert (shown is None) == (new_default is None)
            if new_default is not None:
                assert shown.split("::")[0] == new_default
        else:
            assert (new_default or "DEFAULT NULL") in after_catalog[changed] or (
                new_default is None and "DEFAULT" not in after_catalog[changed]
            )


def test_a_random_change_on_a_server_is_exact_or_leaves_the_table_as_it_was(
    server_backend: Backend,
) -> None:
    engine = server_backend.engine()
    dialect = server_backend.name
    OUTCOMES.clear()

    @settings(
        derandomize=True,
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(scenarios())
    def one(scenario: Any) -> None:
        run_example(engine, dialect, scenario)

    try:
        one()
    finally:
        engine.dispose()
        print(f"\n{dialect} property examples: {sum(OUTCOMES.values())} {dict(OUTCOMES)}")
