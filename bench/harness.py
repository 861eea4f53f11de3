"""Times whole processes and formats what was measured: the benchmark's engine, no cases.

Each case is a command line with an untimed ``prepare`` before every run and an untimed
``verify`` after it. Cases compared with each other run interleaved, one warm-up run each first.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# A run that takes longer than this is a hang, not a measurement.
RUN_TIMEOUT_SECONDS = 1800
GNU_TIME = "/usr/bin/time"  # reports a child's peak memory (apt-get install time)


@dataclass
class Case:
    """One command to time as a whole process."""

    label: str
    argv: list[str]
    cwd: Path
    env: dict[str, str]
    prepare: Callable[[], None] | None = None  # untimed, before every run
    verify: Callable[[], None] | None = None  # untimed, after every run; raises when wrong
    stdin: Path | None = None
    unavailable: str | None = None  # set instead of running it: "not available: …"
    memory: bool = False  # measure the peak memory of each run (under GNU time)
    peaks: list[int] = field(default_factory=list)  # peak resident bytes of each run


@dataclass
class Timing:
    """Wall times of the timed runs of one case, in seconds, or why there are none."""

    label: str
    times: list[float] = field(default_factory=list)
    error: str | None = None
    peak: int | None = None  # the highest peak resident memory of any run, in bytes

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.times)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    def cell(self, rows: int | None = None, *, memory: bool = False) -> str:
        """``median (min-max)`` in the median's unit, with rows/s when ``rows`` is given and
        the peak memory when ``memory`` is."""
        if not self.ok:
            return self.error or "no runs"
        scale, unit, digits = _unit(self.median)
        low, high = (f"{value * scale:.{digits}f}" for value in (min(self.times), max(self.times)))
        text = f"{self.median * scale:.{digits}f} {unit} ({low}-{high})"
        if rows:
            text += f", {rows / self.median:,.0f} rows/s"
        if memory and self.peak is not None:
            text += f", peak {self.peak / 2**20:,.0f} MiB"
        return text


class RunFailed(Exception):
    """A timed command exited with an error, or its result was wrong."""


def run_once(case: Case) -> float:
    """Prepare, run and verify ``case`` once; return the run's wall time in seconds.

    With ``case.memory``, the command runs under GNU ``time``, whose report of the child's peak
    resident memory is added to ``case.peaks``. (The benchmark's own ``wait4`` cannot report it:
    Linux carries a forking parent's peak into its child's, so every child would show at least
    the benchmark's own size.) ``time`` adds one small exec to the timed run.

    Raises:
        RunFailed: the command failed or ``verify`` found its result wrong.
    """
    if case.prepare is not None:
        case.prepare()
    stdin = case.stdin.open("rb") if case.stdin is not None else subprocess.DEVNULL
    argv = case.argv
    with tempfile.NamedTemporaryFile("r", suffix=".maxrss") as report:
        if case.memory:
            argv = [GNU_TIME, "--format=%M", f"--output={report.name}", *argv]
        try:
            started = time.perf_counter()
            done = subprocess.run(
                argv,
                cwd=case.cwd,
                env=case.env,
                stdin=stdin,
                capture_output=True,
                timeout=RUN_TIMEOUT_SECONDS,
            )
            elapsed = time.perf_counter() - started
        finally:
            if case.stdin is not None:
                stdin.close()  # type: ignore[union-attr]  # a file object exactly when stdin is set
        if case.memory and done.returncode == 0:
            case.peaks.append(int(report.read().strip().splitlines()[-1]) * 1024)  # KiB
    if done.returncode != 0:
        reason = _last_line(done.stderr or done.stdout)
        raise RunFailed(f"failed (exit {done.returncode}): {reason}")
    if case.verify is not None:
        try:
            case.verify()
        except Exception as exc:
            raise RunFailed(f"wrong result: {exc}") from exc
    return elapsed


def measure(cases: list[Case], runs: int, log: Callable[[str], None] = print) -> list[Timing]:
    """Warm each case up once, then time ``runs`` rounds, the cases interleaved in each round.

    Interleaving spreads any drift of the machine (other load, CPU frequency) over every case
    alike. A case that fails is reported with its error; the others go on.
    """
    timings = [Timing(case.label, error=case.unavailable) for case in cases]
    for case, timing in zip(cases, timings, strict=True):
        if timing.error is None:
            try:
                run_once(case)
            except RunFailed as exc:
                timing.error = str(exc)
    for round_number in range(runs):
        for case, timing in zip(cases, timings, strict=True):
            if timing.error is not None:
                continue
            try:
                timing.times.append(run_once(case))
            except RunFailed as exc:
                timing.error = str(exc)
        log(f"    round {round_number + 1}/{runs} done")
    for case, timing in zip(cases, timings, strict=True):
        timing.peak = max(case.peaks, default=None)
        state = timing.cell(memory=case.memory) if timing.ok else timing.error
        log(f"  {timing.label}: {state}")
    return timings


def check_call(argv: list[str], cwd: Path, env: dict[str, str]) -> str:
    """Run a setup command; return its stdout, or raise with its last error line."""
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {_last_line(done.stderr or done.stdout)}")
    return done.stdout


def clean_environment() -> dict[str, str]:
    """The caller's environment without any ZOS_ setting, so no local config leaks in."""
    return {key: value for key, value in os.environ.items() if not key.startswith("ZOS_")}


@dataclass
class Row:
    """One line of the results table: zos against a reference, and the target if there is one."""

    measurement: str
    zos: Timing
    reference: Timing | None = None
    target: str = ""  # shown as is, e.g. "≤ 0.65" (a ratio) or "≤ 1 s"
    limit: float | None = None  # the highest ratio (or absolute value) that meets the target
    absolute_value: float | None = None  # compared with limit instead of the ratio
    rows: int | None = None  # show rows/s on both sides
    zos_text: str | None = None  # replaces zos's timing cell
    memory: bool = False  # show the peak memory on both sides
    reference_text: str | None = None  # replaces the reference's cell
    ratio_text: str | None = None  # replaces the ratio's cell

    @property
    def ratio(self) -> float | None:
        if self.reference is None or not (self.zos.ok and self.reference.ok):
            return None
        return self.zos.median / self.reference.median

    @property
    def met(self) -> str:
        if self.limit is None:
            return ""
        value = self.absolute_value if self.absolute_value is not None else self.ratio
        if value is None:
            return "n/a"
        return "yes" if value <= self.limit else "**no**"


def results_table(rows: list[Row]) -> str:
    """The Markdown results table."""
    lines = [
        "| measurement | zos | Alembic / reference | ratio | target | met? |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        zos = (
            row.zos_text if row.zos_text is not None else row.zos.cell(row.rows, memory=row.memory)
        )
        reference = (
            row.reference.cell(row.rows, memory=row.memory) if row.reference is not None else ""
        )
        if row.reference is not None:
            reference = f"{row.reference.label}: {reference}"
        if row.reference_text is not None:
            reference = row.reference_text
        ratio = f"{row.ratio:.2f}" if row.ratio is not None else ""
        if row.ratio_text is not None:
            ratio = row.ratio_text
        cells = (row.measurement, zos, reference, ratio, row.target, row.met)
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


def replace_marked_section(readme: Path, body: str) -> None:
    """Put ``body`` between the ``<!-- results -->`` marker lines of ``readme``, keeping the rest.

    Only markers alone on their line count, so prose may name them.
    """
    start, end = "<!-- results -->", "<!-- /results -->"
    lines = readme.read_text(encoding="utf-8").splitlines()
    stripped = [line.strip() for line in lines]
    if start not in stripped or end not in stripped[stripped.index(start) :]:
        lines += ["", start, end]
        stripped = [line.strip() for line in lines]
    first = stripped.index(start)
    last = stripped.index(end, first)
    lines[first + 1 : last] = body.strip().splitlines()
    readme.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _unit(seconds: float) -> tuple[float, str, int]:
    """How to show a duration: multiplier, unit and decimals."""
    if seconds < 0.1:
        return 1000, "ms", 1
    if seconds < 1:
        return 1000, "ms", 0
    return 1, "s", 2


def _last_line(output: bytes | str) -> str:
    text = output.decode(errors="replace") if isinstance(output, bytes) else output
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else "no output"
