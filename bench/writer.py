"""A concurrent writer: one-row inserts in a loop, timing how long each one took.

Run by the benchmark beside a migration:  python bench/writer.py DB STOP_FILE
Prints ``ready`` after its first insert, keeps inserting (about 100 a second) until STOP_FILE
exists, then prints one JSON object: inserts, longest_wait_s, over_1s.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from pathlib import Path

PAUSE_SECONDS = 0.01
BUSY_TIMEOUT_MS = 120_000


def insert_one(conn: sqlite3.Connection, n: int) -> float:
    """Insert one row in its own transaction, as a running zos would; return the seconds it took."""
    started = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(
        'INSERT INTO speech_pressure (id, amount, "trigger", server_id, created_at) '
        "VALUES (?, 1.0, 'benchmark writer', NULL, datetime('now'))",
        (f"W{n:025d}",),
    )
    conn.execute("COMMIT")
    return time.perf_counter() - started


def main() -> None:
    database, stop_file = Path(sys.argv[1]), Path(sys.argv[2])
    conn = sqlite3.connect(database, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    waits = [insert_one(conn, 0)]
    print("ready", flush=True)
    while not stop_file.exists():
        time.sleep(PAUSE_SECONDS)
        waits.append(insert_one(conn, len(waits)))
    conn.close()
    report = {
        "inserts": len(waits),
        "longest_wait_s": max(waits),
        "over_1s": sum(1 for wait in waits if wait > 1),
    }
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
