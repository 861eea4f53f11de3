"""One URL parser: every shape an operator writes is read as meant, or refused without the URL."""

from __future__ import annotations

import string
import warnings
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zos.config import Settings
from zos.database import first_line, resolve_target
from zos.errors import ConfigError
from zos.migrator.reader import plain_sqlite_path
from zos.urls import InvalidUrl, mask_url, parse_url, sqlite_folder_problem, sqlite_url


def test_a_server_url_is_split_into_its_parts_and_displayed_without_the_password() -> None:
    url = parse_url("postgresql+psycopg://zos:S3cr3t@db.internal:5433/zos?sslmode=require")
    assert (url.backend, url.driver, url.username, url.password) == (
        "postgresql",
        "psycopg",
        "zos",
        "S3cr3t",
    )
    assert (url.host, url.port, url.database) == ("db.internal", 5433, "zos")
    assert url.display == "postgresql+psycopg://zos:***@db.internal:5433/zos?sslmode=require"


def test_an_unencoded_at_sign_stays_in_the_password() -> None:
    url = parse_url("postgresql+psycopg://zos:p@ssw0rd@db/zos")
    assert (url.password, url.host) == ("p@ssw0rd", "db")
    assert "ssw0rd" not in url.display


def test_an_at_sign_in_a_query_value_leaves_the_user_information_alone() -> None:
    url = parse_url("postgresql+psycopg://zos@db:5432/zos?password=p@ssw0rd")
    assert (url.username, url.host, url.port, url.database) == ("zos", "db", 5432, "zos")
    assert url.display == "postgresql+psycopg://zos@db:5432/zos?password=***"


def test_a_password_in_the_query_string_is_masked() -> None:
    url = parse_url("postgresql+psycopg://zos@db/zos?password=S3cr3t&sslmode=require")
    # What follows a secret may be more of it (an unencoded "&"), so none of it is shown.
    assert url.display == "postgresql+psycopg://zos@db/zos?password=***&***"
    assert url.query == (("password", "S3cr3t"), ("sslmode", "require"))


def test_percent_encoded_parts_are_decoded() -> None:
    url = parse_url("mysql+pymysql://zos:p%40ss%2Fw@127.0.0.1:3306/my%20db")
    assert (url.password, url.database) == ("p@ss/w", "my db")


def test_an_ipv6_host_in_brackets_is_read() -> None:
    url = parse_url("postgresql+psycopg://zos:pw@[::1]:5432/zos")
    assert (url.host, url.port) == ("::1", 5432)
    assert url.display == "postgresql+psycopg://zos:***@[::1]:5432/zos"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("postgresql+psycopg:/zos:S3cr3t@host/db", "must be followed by '//'"),
        ("postgresql+psycopg://zos:S3cr3t@host:port/db", "the port must be a number"),
        ("postgresql+psycopg://zos:S3cr3t@host:99999/db", "the port must be a number"),
        ("postgresql+psycopg://zos:S3cr3t@[::1:5432/db", "no closing ']'"),
        ("postgresql+psycopg://zos:S3cr3t@::1]:5432/db", "bracket in the host"),
        ("mysql+pymysql://zos:S3cr3t@127.0.0.1:3306", "must name its database"),
        ("mysql+pymysql://zos:S3cr3t@127.0.0.1:3306/", "must name its database"),
        ("sqlite+aiosqlite:///data/zos.db", "unsupported driver 'aiosqlite'"),
        ("postgresql+asyncpg://zos:S3cr3t@h/db", "unsupported driver 'asyncpg'"),
        ("oracle://scott:S3cr3t@db/orcl", "unsupported database 'oracle'"),
        ("sqlite://zos:S3cr3t@/data/zos.db", "an SQLite URL has no host or user"),
        ("not a url S3cr3t", "does not start with a scheme"),
        ("postgresql+psycopg://zos:S3c@h/x@db/zos", "can be read more than one way"),
        ("postgresql+psycopg://zos@db/zos?password=S3c@h/x", "can be read more than one way"),
    ],
)
def test_a_malformed_url_is_refused_without_quoting_it(raw: str, reason: str) -> None:
    with pytest.raises(InvalidUrl, match=reason) as caught:
        parse_url(raw)
    assert "S3cr3t" not in str(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        "postgresql+psycopg:/zos:S3cr3tpw@host/db",
        "postgresql+psycopg://zos:S3cr3tpw@host/db",
        "postgresql+psycopg://zos:S3cr3tpw@with@at@host/db",
        "failed for mysql+pymysql://zos:S3cr3tpw@h/db: refused",
        "postgresql+psycopg://zos@host/db?sslmode=x&password=S3cr3tpw",
    ],
)
def test_mask_url_hides_the_password_in_free_text(text: str) -> None:
    assert "S3cr3tpw" not in mask_url(text)


def test_a_parsed_password_is_hidden_wherever_a_message_quotes_it() -> None:
    parse_url("postgresql+psycopg://zos:quoted-elsewhere-pw@h/db")
    assert first_line(RuntimeError('FATAL: bad password "quoted-elsewhere-pw"\nmore')) == (
        'FATAL: bad password "***"'
    )


@pytest.mark.parametrize(
    "raw",
    [
        "sqlite:///data/my%20db/zos.db",
        "sqlite:///data/a%25b/zos.db",
        "sqlite:///data/100%25/what%3F.db",
        "sqlite:///data/plain/zos.db",
        "sqlite:////tmp/abs%20dir/zos.db",
    ],
)
def test_the_stdlib_read_path_and_sqlalchemy_open_the_same_file(raw: str) -> None:
    settings = Settings(database={"url": raw})  # type: ignore[arg-type]
    target = resolve_target(settings)
    assert plain_sqlite_path(raw) == target.sqlite_path
    assert target.url.database == str(target.sqlite_path)


def test_the_default_url_of_an_odd_data_dir_names_that_directory() -> None:
    for folder in ("my data", "100%", "what?", "a#b"):
        settings = Settings(data_dir=Path(folder))
        assert plain_sqlite_path(settings.database_url) == Path(folder) / "zos.db"
        assert resolve_target(settings).sqlite_path == Path(folder) / "zos.db"


def test_sqlite_url_gives_the_path_back() -> None:
    path = Path("/srv/odd %? dir/zos.db")
    assert parse_url(sqlite_url(path)).sqlite_path == path


def test_in_memory_sqlite_has_no_file() -> None:
    assert parse_url("sqlite://").sqlite_path is None
    assert parse_url("sqlite:///:memory:").sqlite_path is None


def test_an_unencoded_ampersand_or_plus_stays_in_a_query_password() -> None:
    url = parse_url("postgresql+psycopg://zos@db/zos?password=a+b&c&sslmode=require")
    assert url.query == (("password", "a+b&c"), ("sslmode", "require"))
    assert "a+b" not in url.display and "&c" not in url.display


@settings(derandomize=True, max_examples=1000, deadline=None)
@given(text=st.text(max_size=60) | st.from_regex(r"\A[a-z+]{3,20}:/{0,3}[^\s]{0,40}\Z"))
def test_any_text_is_a_url_or_one_invalid_url_error(text: str) -> None:
    try:
        url = parse_url(text)
    except InvalidUrl as error:
        assert "\n" not in str(error)
    else:
        assert url.backend in ("sqlite", "postgresql", "mysql")


@settings(derandomize=True, max_examples=1000, deadline=None)
@given(
    password=st.text(string.punctuation + string.ascii_letters + "0123456789 é密", min_size=4),
    user=st.sampled_from(["", "zos", "a.b-c_d"]),
    query_password=st.booleans(),
    encoded=st.booleans(),
)
def test_the_display_of_a_server_url_never_holds_a_piece_of_its_password(
    password: str, user: str, query_password: bool, encoded: bool
) -> None:
    secret = quote(password, safe="") if encoded else password
    if query_password:
        shape = "postgresql+psycopg://{user}@db.internal:5432/zos?sslmode=x&password={secret}"
    else:
        shape = "postgresql+psycopg://{user}:{secret}@db.internal:5432/zos?sslmode=x"
    raw = shape.format(user=user, secret=secret)
    try:
        url = parse_url(raw)
    except InvalidUrl as error:
        shown = str(error)
    else:
        shown = url.display
    # The URL without its password (not raw.replace: a password may be a piece of "sslmode").
    elsewhere = shape.format(user=user, secret="") + shape.format(user=user, secret="***")
    pieces = {password[i : i + 4] for i in range(len(password) - 3)}
    assert [p for p in pieces if p in shown and p not in elsewhere] == []


# Query options (issue 11): every option is checked once by parse_url, so each command gives the
# same verdict, and what parse_url accepts SQLAlchemy's dialect converts without an error.
_OPTION_KEYS = [
    "timeout",
    "check_same_thread",
    "cached_statements",
    "detect_types",
    "uri",
    "mode",
    "cache",
    "isolation_level",
    "vfs",
    "port",
    "connect_timeout",
    "read_timeout",
    "write_timeout",
    "client_flag",
    "local_infile",
    "compress",
    "use_unicode",
    "ssl_check_hostname",
    "charset",
    "sslmode",
]
_OPTION_VALUES = st.sampled_from(
    ["", "1", "0", "2", "-1", "abc", "true", "maybe", "1.5", "inf", "nan", "ro", "rwc", "memory"]
) | st.text(string.ascii_letters + string.digits + ".-_ ", max_size=6)


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("timeout=abc", "'timeout' must be a number of seconds"),
        ("timeout=inf", "'timeout' must be a number of seconds"),
        ("check_same_thread=maybe", "'check_same_thread' must be true or false"),
        ("mode=ro", "unknown SQLite URL option 'mode'"),
        ("isolation_level=SERIALIZABLE", "unknown SQLite URL option 'isolation_level'"),
        ("uri=true", "must be a file: URI"),
        ("uri=true&vfs=unix-none", "unknown SQLite URL option 'vfs'"),
        ("uri=true&mode=memory", "mode='memory'"),
    ],
)
def test_an_sqlite_option_zos_cannot_honour_is_refused_by_the_parser(
    query: str, words: str
) -> None:
    with pytest.raises(InvalidUrl, match=words.replace("(", r"\(")):
        parse_url(f"sqlite:///data/zos.db?{query}")


@pytest.mark.parametrize(
    "raw",
    [
        "postgresql+psycopg://zos@db/zos?port=abc",
        "mysql+pymysql://zos@db/zos?read_timeout=abc",
        "mysql+pymysql://zos@db/zos?client_flag=1.5",
        "mysql+pymysql://zos@db/zos?local_infile=2",
        "mariadb+pymysql://zos@db/zos?port=70000",
    ],
)
def test_a_server_option_sqlalchemy_cannot_convert_is_refused_by_the_parser(raw: str) -> None:
    with pytest.raises(InvalidUrl, match="URL option '"):
        parse_url(raw)


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ("sqlite:///file:b.db?mode=rwc&uri=true", Path("b.db")),
        ("sqlite:///file:///tmp/x%20y.db?uri=true&mode=ro", Path("/tmp/x y.db")),
        ("sqlite:///file://localhost/tmp/z.db?uri=1", Path("/tmp/z.db")),
    ],
)
def test_an_sqlite_uri_filename_is_the_file_sqlalchemy_opens(raw: str, path: Path) -> None:
    target = resolve_target(Settings(database={"url": raw}))  # type: ignore[arg-type]
    assert target.sqlite_path == path
    (filename,), _ = target.url.get_dialect()().create_connect_args(target.url)
    assert str(filename).startswith("file:") and target.url.query["uri"]


@settings(derandomize=True, max_examples=1000, deadline=None)
@given(
    base=st.sampled_from(
        [
            "sqlite:///data/zos.db",
            "sqlite:///file:data/zos.db",
            "postgresql+psycopg://zos@db/zos",
            "mysql+pymysql://zos@db/zos",
        ]
    ),
    options=st.lists(st.tuples(st.sampled_from(_OPTION_KEYS), _OPTION_VALUES), max_size=3),
)
def test_a_url_option_is_refused_by_the_parser_or_converted_by_sqlalchemy(
    base: str, options: list[tuple[str, str]]
) -> None:
    raw = base + ("?" + "&".join(f"{k}={quote(v)}" for k, v in options) if options else "")
    try:
        target = resolve_target(Settings(database={"url": raw}))  # type: ignore[arg-type]
    except ConfigError as error:
        assert "URL" in str(error) and "\n" not in str(error)
        return

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an option SQLAlchemy would ignore with a warning
        target.url.get_dialect()().create_connect_args(target.url)
    if target.backend == "sqlite" and target.sqlite_path is not None:
        # The read path (status, the guard) opens the file SQLAlchemy opens.
        uri = dict(target.url.query).get("uri") in ("1", "true", "yes", "on", "y", "t")
        database = str(target.url.database)
        expected = database.removeprefix("file:") if uri else database
        assert target.sqlite_path == Path(expected)


def test_a_file_where_a_folder_of_the_sqlite_path_should_be_is_named(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    for path in (tmp_path / "afile" / "zos.db", tmp_path / "afile" / "sub" / "zos.db"):
        assert sqlite_folder_problem(path) == (
            f"cannot use SQLite database {path}: {tmp_path / 'afile'} is a file, not a folder"
        )
    assert sqlite_folder_problem(tmp_path / "not" / "yet" / "zos.db") is None
