"""Whole-process wall time of the commands operators run at every deploy and start.

Run by hand, never in CI:  .venv/bin/python bench/startup.py [--runs N]
Prints the median, minimum and maximum of N runs of each command against an up-to-date
SQLite database in a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def zos_command() -> list[str]:
    script = Path(sys.executable).with_name("zos")
    return [str(script)] if script.exists() else [sys.executable, "-m", "zos"]


def time_runs(argv: list[str], runs: int, cwd: Path, env: dict[str, str]) -> list[float]:
    subprocess.run(argv, cwd=cwd, env=env, check=True, capture_output=True)  # warm the caches
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, cwd=cwd, env=env, check=True, capture_output=True)
        times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    zos = zos_command()
    workdir = Path(tempfile.mkdtemp(prefix="zos-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZOS_")}
    try:
        subprocess.run(
            [*zos, "db", "migrate"], cwd=workdir, env=env, check=True, capture_output=True
        )
        cases = {
            "zos --help": [*zos, "--help"],
            "zos version": [*zos, "version"],
            "zos db status (up to date)": [*zos, "db", "status"],
            "zos db migrate (nothing to do)": [*zos, "db", "migrate"],
            f"{Path(sys.executable).name} -c pass": [sys.executable, "-c", "pass"],
        }
        print(f"{'command':34} {'median ms':>10} {'min ms':>8} {'max ms':>8}   ({args.runs} runs)")
        for name, argv in cases.items():
            times = time_runs(argv, args.runs, workdir, env)
            print(f"{name:34} {statistics.median(times):10.1f} {min(times):8.1f} {max(times):8.1f}")
    finally:
        shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
