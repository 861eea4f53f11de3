"""ULIDs from zos.ids: format, embedded time, ordering and validation."""

import time
from itertools import pairwise

import pytest

from zos.ids import is_ulid, new_ulid

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def decode_timestamp_ms(ulid: str) -> int:
    value = 0
    for char in ulid:
        value = value * 32 + CROCKFORD.index(char)
    return value >> 80


def test_ulid_is_26_characters_long() -> None:
    assert len(new_ulid()) == 26


def test_ulid_uses_only_the_crockford_base32_alphabet() -> None:
    assert set(new_ulid()) <= set(CROCKFORD)


def test_ulid_embeds_the_current_time_in_milliseconds() -> None:
    before = time.time_ns() // 1_000_000
    ulid = new_ulid()
    after = time.time_ns() // 1_000_000
    assert before <= decode_timestamp_ms(ulid) <= after


def test_ids_generated_later_sort_after_earlier_ones_even_within_one_millisecond() -> None:
    ids = [new_ulid() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(earlier < later for earlier, later in pairwise(ids))


def test_generated_ids_are_recognised_as_ulids() -> None:
    assert is_ulid(new_ulid())


@pytest.mark.parametrize(
    "value",
    [
        "",
        "01ARZ3NDEKTSV4RRFFQ69G5FA",  # 25 characters
        "01ARZ3NDEKTSV4RRFFQ69G5FAVX",  # 27 characters
        "01ARZ3NDEKTSV4RRFFQ69G5FAI",  # I is not in the Crockford alphabet
        "01ARZ3NDEKTSV4RRFFQ69G5FAU",  # nor is U
        "01arz3ndektsv4rrffq69g5fav",  # not canonical upper case
        "81ARZ3NDEKTSV4RRFFQ69G5FAV",  # more than 128 bits
        "01ARZ3NDEKTSV4RRFFQ69G5FA-",
    ],
)
def test_is_ulid_rejects_malformed_strings(value: str) -> None:
    assert not is_ulid(value)


def test_is_ulid_accepts_a_canonical_ulid() -> None:
    assert is_ulid("01ARZ3NDEKTSV4RRFFQ69G5FAV")


def test_ids_keep_sorting_after_earlier_ones_when_the_clock_steps_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = time.time_ns()
    monkeypatch.setattr(time, "time_ns", lambda: now)
    first = new_ulid()
    monkeypatch.setattr(time, "time_ns", lambda: now - 5_000_000_000)  # five seconds back
    later = [new_ulid() for _ in range(100)]
    assert all(earlier < after for earlier, after in pairwise([first, *later]))
