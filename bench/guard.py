"""The start-up guard as an application calls it, timed inside the process.

Run by the benchmark:  python bench/guard.py CALLS   (ZOS_DATABASE_URL etc. in the environment)
Prints one JSON object: ``first_s``, the seconds from before zos is imported until the first
``ensure_schema_current`` returns (what an application's start pays), and ``warm_s``, the
median of CALLS further calls in the same process (what a health check that repeats it pays).
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402

from zos.config import load_settings  # noqa: E402
from zos.migrator import ensure_schema_current  # noqa: E402


def main() -> None:
    settings = load_settings()
    ensure_schema_current(settings)
    first = time.perf_counter() - STARTED
    warm = []
    for _ in range(int(sys.argv[1])):
        started = time.perf_counter()
        ensure_schema_current(settings)
        warm.append(time.perf_counter() - started)
    print(json.dumps({"first_s": first, "warm_s": statistics.median(warm)}), flush=True)


if __name__ == "__main__":
    main()
