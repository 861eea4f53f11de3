"""ULID generation: 26-character, time-sortable ids for the rows zos creates itself.

Pure standard library; ids are monotonic within one process, so later ids always sort after.
"""

import secrets
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_ALPHABET_SET = frozenset(_ALPHABET)
_LENGTH = 26
_RANDOM_BITS = 80
_RANDOM_LIMIT = 1 << _RANDOM_BITS


class _MonotonicSource:
    """Hands out (milliseconds, random) pairs that never repeat and never go backwards."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_random = 0

    def next_value(self) -> int:
        with self._lock:
            now_ms = time.time_ns() // 1_000_000
            if now_ms > self._last_ms:
                random_part = secrets.randbits(_RANDOM_BITS)
            else:
                # Same millisecond, or the clock stepped back: keep the last time and count up
                # from the last random part so the new id still sorts after the previous one.
                now_ms = self._last_ms
                random_part = self._last_random + 1
                if random_part == _RANDOM_LIMIT:
                    now_ms += 1
                    random_part = secrets.randbits(_RANDOM_BITS)
            self._last_ms = now_ms
            self._last_random = random_part
            return (now_ms << _RANDOM_BITS) | random_part


_source = _MonotonicSource()


def new_ulid() -> str:
    """Return a new ULID that sorts after every ULID this process generated before it."""
    value = _source.next_value()
    return "".join(_ALPHABET[(value >> shift) & 0x1F] for shift in range(125, -1, -5))


def is_ulid(value: str) -> bool:
    """Return True when value is a canonical ULID: 26 upper-case Crockford base32 characters."""
    # 26 characters carry 130 bits; a first character above 7 would overflow 128 bits.
    return len(value) == _LENGTH and value[0] <= "7" and set(value) <= _ALPHABET_SET
