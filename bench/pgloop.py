"""The reference for zos's batched backfill on PostgreSQL: the same work as a hand-written loop.

Run by the benchmark:  python bench/pgloop.py URL BATCH_SIZE
Adds ``messages.edited_at``, then fills it from ``created_at`` in primary-key ranges of
BATCH_SIZE rows, one transaction per batch, the way an operator would write it with psycopg
alone: no bookkeeping, no resumability, no lock-wait bounds.
"""

from __future__ import annotations

import sys

import psycopg


def main() -> None:
    url, size = sys.argv[1], int(sys.argv[2])
    with psycopg.connect(url, connect_timeout=10) as conn:
        conn.execute("ALTER TABLE messages ADD COLUMN edited_at TIMESTAMP")
        conn.commit()
        low = ""
        while True:
            row = conn.execute(
                "SELECT id FROM messages WHERE id > %s ORDER BY id LIMIT 1 OFFSET %s",
                (low, size - 1),
            ).fetchone()
            if row is None:
                row = conn.execute("SELECT MAX(id) FROM messages WHERE id > %s", (low,)).fetchone()
            high = row[0] if row else None
            if high is None:
                break
            conn.execute(
                "UPDATE messages SET edited_at = created_at WHERE id > %s AND id <= %s",
                (low, high),
            )
            conn.commit()
            low = high


if __name__ == "__main__":
    main()
