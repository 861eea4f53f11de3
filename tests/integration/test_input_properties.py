"""Property: whatever URL, config file and ``ZOS_*`` variables an operator writes, every command
ends with exit code 0, 1 or 2, no traceback, and no piece of the password in any output.

SQLite files in a temporary folder and servers on 127.0.0.1 port 1 (refused at once), so no
example waits on a network.
"""

from __future__ import annotations

import itertools
import json
import string
from pathlib import Path
from urllib.parse import quote

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.conftest import run_cli

EXAMPLES = 500
# Every printable ASCII special character, a few letters and digits, and non-ASCII letters.
PASSWORD_ALPHABET = string.punctuation + " QXZqxz0123456789" + "éßø密ж"
SERVER_SCHEMES = ["postgresql+psycopg", "mysql+pymysql", "mariadb+pymysql", "postgresql"]
COMMANDS = [
    ("config", "check"),
    ("db", "status"),
    ("db", "history"),
    ("db", "check"),
    ("db", "migrate", "--dry-run"),
    ("db", "backup"),
]
# URL shapes with the password in it; {pw} raw, {enc} percent-encoded.
SERVER_SHAPES = [
    "{scheme}://zos:{enc}@127.0.0.1:1/zos",
    "{scheme}://zos:{pw}@127.0.0.1:1/zos",
    "{scheme}:/zos:{pw}@127.0.0.1:1/zos",
    "{scheme}://zos@127.0.0.1:1/zos?password={enc}",
    "{scheme}://zos@127.0.0.1:1/zos?sslmode=disable&password={pw}",
    "{scheme}://zos:{pw}@[::1:1/zos",
    "{scheme}://zos:{pw}@[::1]:1/zos",
    "{scheme}://zos:{enc}@127.0.0.1:port/zos",
    "{scheme}://zos:{enc}@127.0.0.1:1",
    "{scheme}+aiodriver://zos:{enc}@127.0.0.1:1/zos",
]
SQLITE_SHAPES = [
    "sqlite:///{dir}/my%20db/zos.db",
    "sqlite:///{dir}/zos.db?password={enc}",
    "sqlite+aiosqlite:///{dir}/zos.db",
    "sqlite://zos:{enc}@/{dir}/zos.db",
]
# URL query options (issue 11 review): bad values SQLAlchemy or the driver would choke on,
# options SQLite would ignore, file: URIs, repeats, and a few that are fine.
OPTIONS = [
    "",
    "",
    "charset=nope",
    "read_timeout=abc",
    "client_flag=abc",
    "local_infile=2",
    "ssl_ca=/nonexistent/ca.pem",
    "port=abc",
    "connect_timeout=-1",
    "sslmode=bogus",
    "timeout=abc",
    "timeout=1&timeout=2",
    "check_same_thread=maybe",
    "mode=ro",
    "uri=true",
    "uri=true&mode=memory",
    "isolation_level=SERIALIZABLE",
    "cached_statements=x",
    "timeout=5",
    "compress=true",
    "unknown_zz=1",
]
NOISE = st.sampled_from(
    [
        {},
        {},
        {},
        {"ZOS_DATABASE__CONNECT_TIMEOUT_SECONDS": "0.5"},
        {"ZOS_LOG_LEVEL": "INFO", "ZOS_BACKUPS__KEEP": "1"},
        {"ZOS_DATABASE__LOCK_TIMEOUT_SECONDS": "inf"},
        {"ZOS_DATABASE__BUSY_TIMEOUT_SECONDS": "1e300"},
        {"ZOS_DATABASE__CONNECT_TIMEOUT_SECONDS": "2"},
        {"ZOS_LOCK_TIMEOUT_SECONDS": "60"},
        {"ZOS_BACKUPS": "{keep: 1}"},
        {"ZOS_BACKUPS__KEEP": "0"},
        {"ZOS_LOG_LEVEL": "DEBUG"},
        {"ZOS_LOG_LEVEL": "DEBUG", "ZOS_LOG_JSON": "true"},
    ]
)
_counter = itertools.count()


def url_of(shape: str, password: str, folder: Path, scheme: str) -> str:
    return shape.format(
        scheme=scheme, pw=password, enc=quote(password, safe=""), dir=str(folder).lstrip("/")
    )


def place(url: str, where: str, folder: Path) -> tuple[dict[str, str], list[str]]:
    """The environment and the leading options that give ``url`` to zos from ``where``."""
    if where == "env":
        return {"ZOS_DATABASE_URL": url}, []
    if where == "nested-env":
        return {"ZOS_DATABASE__URL": url}, []
    if where == "json-env":
        return {"ZOS_DATABASE": json.dumps({"url": url})}, []
    key = "migrate_url" if where == "file-migrate-url" else "url"
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump({"database": {key: url}}, allow_unicode=True))
    return {}, ["--config", str(config)]


def leaked_pieces(password: str, output: str, elsewhere: str) -> list[str]:
    """Every 4-character piece of the password in ``output`` that does not come from elsewhere."""
    pieces = {password[i : i + 4] for i in range(len(password) - 3)}
    forms = {piece for piece in pieces if piece not in elsewhere}
    forms |= {quote(piece, safe="") for piece in forms if quote(piece, safe="") not in elsewhere}
    return sorted(piece for piece in forms if piece in output)


@settings(
    derandomize=True,
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    password=st.text(PASSWORD_ALPHABET, min_size=6, max_size=16),
    shape=st.sampled_from(SERVER_SHAPES + SQLITE_SHAPES),
    scheme=st.sampled_from(SERVER_SCHEMES),
    where=st.sampled_from(["env", "nested-env", "json-env", "file", "file-migrate-url"]),
    noise=NOISE,
    command=st.sampled_from(COMMANDS),
    # Half the examples without an option, so the URL shapes above are tried as often as before.
    option=st.just("") | st.sampled_from(OPTIONS),
)
def test_no_input_gives_a_traceback_or_shows_a_password(
    tmp_path: Path,
    password: str,
    shape: str,
    scheme: str,
    where: str,
    noise: dict[str, str],
    command: tuple[str, ...],
    option: str,
) -> None:
    folder = tmp_path / f"example_{next(_counter)}"
    (folder / "my db").mkdir(parents=True)
    if option:
        shape += ("&" if "?" in shape else "?") + option
    url = url_of(shape, password, folder, scheme)
    env, options = place(url, where, folder)
    env = {**env, **noise, "ZOS_DATA_DIR": str(folder / "data")}
    # run_cli does not catch exceptions: anything but a ZosError fails the test with its traceback.
    result = run_cli(*options, *command, env=env)
    output = result.stdout + result.stderr
    assert result.exit_code in (0, 1, 2), output
    event(f"exit code {result.exit_code}")
    event(f"query option {option or '(none)'}")
    assert "Traceback" not in output
    # What the same input prints with another password: pieces found there are not leaks.
    other = folder / "other"
    (other / "my db").mkdir(parents=True)
    other_env, other_options = place(
        url_of(shape, "Q" * len(password), other, scheme), where, other
    )
    other_env = {**other_env, **noise, "ZOS_DATA_DIR": str(other / "data")}
    neutral = run_cli(*other_options, *command, env=other_env)
    elsewhere = url_of(shape, "", folder, scheme) + json.dumps(noise) + str(folder)
    elsewhere += neutral.stdout + neutral.stderr
    assert leaked_pieces(password, output, elsewhere) == [], output
