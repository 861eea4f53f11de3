"""Opt-in pytest plugin: the checks of ``zos db verify`` as tests, one per backend, check and
version. Enable it with ``pytest_plugins = ["zos.testing.verify"]`` in a ``conftest.py``;
the items are collected beside that ``conftest.py``."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData

from zos.config import Settings
from zos.errors import Interrupted, ZosError
from zos.migrator.discovery import discover_migrations
from zos.migrator.verify import VerifyReport, verify
from zos.migrator.verify_hooks import load_metadata

_reports: dict[str, VerifyReport | str] = {}
_metadata = pytest.StashKey[MetaData | None]()
_SQLITE = "sqlite"
_ENABLING_LINE = "zos.testing.verify"


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    # The conftest.py that enables this plugin is where its tests live in the report.
    if file_path.name != "conftest.py" or _ENABLING_LINE not in file_path.read_text("utf-8"):
        return None
    return MigrationChecks.from_parent(parent, path=file_path)


class MigrationChecks(pytest.File):
    """The verify checks of every configured backend."""

    def collect(self) -> Iterator[pytest.Item]:
        config = self.config
        reference = str(config.getini("zos_metadata") or "")
        try:
            metadata = load_metadata(reference, config.rootpath) if reference else None
        except ZosError as error:  # a configuration error: fails the collection, never skips
            pytest.fail(f"zos_metadata: {error}", pytrace=False)
        config.stash[_metadata] = metadata
        directory = _migrations_dir(config)
        versions = [script.version for script in discover_migrations(directory)]
        yield CheckItem.from_parent(
            self, name="zos_verify[files-static]", key=(_SQLITE, "static", None)
        )
        for backend in [_SQLITE, *_server_urls(config)]:
            label = _label(backend)
            kinds: list[tuple[str, int | None]] = [("step-by-step equals all at once", None)]
            kinds += [("data kept", v) for v in versions] + [("atomic", v) for v in versions]
            for kind, version in kinds:
                suffix = "" if version is None else f"-{version:03d}"
                name = f"zos_verify[{label}-{kind.replace(' ', '_')}{suffix}]"
                item = CheckItem.from_parent(self, name=name, key=(backend, kind, version))
                if config.pluginmanager.hasplugin("xdist"):  # one worker runs verify once
                    item.add_marker(pytest.mark.xdist_group(f"zos-verify-{label}"))
                yield item


class CheckItem(pytest.Item):
    """One check of ``zos db verify`` on one backend."""

    def __init__(self, *, key: tuple[str, str, int | None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.key = key

    def runtest(self) -> None:
        backend, kind, version = self.key
        report = _report(self.config, backend)
        if isinstance(report, str):
            if os.environ.get("CI") == "true":
                pytest.fail(report, pytrace=False)
            pytest.skip(report)
        label = "files" if kind == "static" else _label(backend)
        checks = [
            c for c in report.checks if (c.backend, c.name, c.version) == (label, kind, version)
        ]
        if not checks:
            pytest.fail(f"verify ran no {kind!r} check for version {version}", pytrace=False)
        notes = [note for check in checks for note in check.notes]
        if notes:
            self.add_report_section("call", "zos notes", "\n".join(notes))
        problems = [problem for check in checks for problem in check.problems]
        if problems:
            raise CheckFailed(problems)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, CheckFailed):
            return "\n".join(excinfo.value.problems)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, self.name


class CheckFailed(Exception):
    """A verify check found problems; the item shows them one per line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _report(config: pytest.Config, backend: str) -> VerifyReport | str:
    """Run verify once per backend and process (SQLite's run also holds the static check)."""
    if backend not in _reports:
        # verify works in scratch databases of its own; data_dir is never written.
        settings = Settings(
            data_dir=Path(tempfile.gettempdir()) / "zos-verify",
            migrations_dir=_migrations_dir(config),
        )
        urls = [] if backend == _SQLITE else [backend]
        metadata = config.stash.get(_metadata, None)
        try:
            _reports[backend] = verify(settings, urls, metadata=metadata, sqlite=backend == _SQLITE)
        except Interrupted as stop:  # the operator's Ctrl-C ends the session, as pytest's does
            pytest.exit(str(stop), returncode=stop.exit_code)
        except ZosError as error:
            _reports[backend] = str(error)
    return _reports[backend]


def _server_urls(config: pytest.Config) -> list[str]:
    urls = [*config.getini("zos_backends"), *config.getoption("zos_backend")]
    return [url for url in dict.fromkeys(urls) if url]


def _migrations_dir(config: pytest.Config) -> Path:
    configured = str(config.getini("zos_migrations_dir") or "")
    if configured:
        return config.rootpath / configured
    return Path(__file__).parents[1] / "migrations"


def _label(backend: str) -> str:
    if backend == _SQLITE:
        return _SQLITE
    from zos.migrator.dialects.scratch import report_name

    return report_name(backend.split(":", 1)[0].split("+", 1)[0])
