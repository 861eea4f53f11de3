"""Concurrent writers on PostgreSQL: threads, each on its own connection, each transaction one
new message and one update of an existing message, timed.

Run by the benchmark beside a backfill:  python bench/pgwriters.py URL WRITERS KEYS STOP_FILE
KEYS is how many messages exist (ids 1000000000000000001 …); every writer updates random ones,
so a writer meets the rows a backfill batch holds. Prints ``ready`` once every writer has
committed once, writes until STOP_FILE exists, then prints one JSON object: inserts,
longest_wait_s, over_1s.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
from pathlib import Path

import psycopg

PAUSE_SECONDS = 0.02
FIRST_ID = 1_000_000_000_000_000_000
NEW_ID = 3_000_000_000_000_000_000  # sorts after every prepared id (all ids have 19 digits)


class Writer(threading.Thread):
    def __init__(self, url: str, number: int, keys: int, stop_file: Path) -> None:
        super().__init__(daemon=True)
        self.url, self.number, self.keys, self.stop_file = url, number, keys, stop_file
        self.waits: list[float] = []
        self.ready = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with psycopg.connect(self.url, connect_timeout=10) as conn:
                conn.execute("SET statement_timeout = '120s'")
                conn.commit()
                while True:
                    self.waits.append(self.write(conn, len(self.waits)))
                    self.ready.set()
                    if self.stop_file.exists():
                        return
                    time.sleep(PAUSE_SECONDS)
        except BaseException as error:
            self.error = error
            self.ready.set()

    def write(self, conn: psycopg.Connection, n: int) -> float:
        new_id = NEW_ID + self.number * 10_000_000 + n
        old_id = FIRST_ID + random.randint(1, self.keys)
        started = time.perf_counter()
        conn.execute(
            "INSERT INTO messages (id, channel_id, server_id, author_id, content, created_at, "
            "visibility_scope, has_media, has_links, ingested_at) VALUES (%s, "
            "'910000000000000000', '900000000000000000', '920000000000000000', "
            "'a writer''s message', now(), 'public', false, false, now())",
            (str(new_id),),
        )
        conn.execute(
            "UPDATE messages SET reactions_aggregate = '{\"+1\": 1}' WHERE id = %s",
            (str(old_id),),
        )
        conn.commit()
        return time.perf_counter() - started


def main() -> None:
    url, count, keys, stop_file = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    writers = [Writer(url, number, keys, stop_file) for number in range(count)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.ready.wait(60)
    failed = [w.error for w in writers if w.error is not None or not w.ready.is_set()]
    print("failed" if failed else "ready", flush=True)
    for writer in writers:
        writer.join(600)
    waits = [wait for writer in writers for wait in writer.waits]
    errors = [repr(w.error) for w in writers if w.error is not None]
    report = {
        "inserts": len(waits),
        "longest_wait_s": max(waits, default=0.0),
        "over_1s": sum(1 for wait in waits if wait > 1),
        "errors": errors,
    }
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
