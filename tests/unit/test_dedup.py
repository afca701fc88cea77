"""The dedup window: duplicates found, keys forgotten by age and by count, memory bounded."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ingest.dedup import DedupKey, DedupWindow, key_for
from gateway.model import Reading

WINDOW = 100
A, B, C, D = (("dev", f"id-{n}") for n in "abcd")


def test_key_is_device_and_reading_id() -> None:
    reading = Reading("boiler-17", "telemetry", 5, {"t": 1.0}, {}, "boiler-17#42", 42)
    assert key_for(reading) == ("boiler-17", "boiler-17#42")


def test_second_sighting_is_a_duplicate() -> None:
    window = DedupWindow(max_entries=10, window_ns=WINDOW)
    assert window.check_and_add(A, 0) is False
    assert window.check_and_add(A, 1) is True
    assert window.check_and_add(A, 2) is True
    assert len(window) == 1


def test_same_id_from_another_device_is_new() -> None:
    window = DedupWindow(max_entries=10, window_ns=WINDOW)
    assert window.check_and_add(("dev-a", "m1"), 0) is False
    assert window.check_and_add(("dev-b", "m1"), 0) is False
    assert window.check_and_add(("dev-a", "m1"), 0) is True


def test_max_entries_evicts_the_oldest_first() -> None:
    window = DedupWindow(max_entries=3, window_ns=10**12)
    for now, key in enumerate((A, B, C, D)):
        assert window.check_and_add(key, now) is False
        assert len(window) <= 3
    assert len(window) == 3
    # B, C, D are remembered (looking them up does not change the window) ...
    assert [window.check_and_add(k, 10) for k in (B, C, D)] == [True, True, True]
    # ... A, the oldest, was forgotten.
    assert window.check_and_add(A, 10) is False


def test_time_window_evicts_old_keys() -> None:
    window = DedupWindow(max_entries=10, window_ns=WINDOW)
    window.check_and_add(A, 0)
    window.check_and_add(B, 50)
    window.check_and_add(C, 120)  # A is now 120 old: beyond the window
    assert len(window) == 2
    assert window.check_and_add(B, 130) is True  # 80 old: within
    assert window.check_and_add(A, 130) is False  # forgotten: new again


def test_key_reseen_after_expiry_is_new_and_remembered_from_then() -> None:
    window = DedupWindow(max_entries=10, window_ns=WINDOW)
    assert window.check_and_add(A, 0) is False
    assert window.check_and_add(A, WINDOW - 1) is True
    # Nothing else arrived, so A was never evicted; it is still too old to count.
    assert window.check_and_add(A, WINDOW + 1) is False
    assert window.check_and_add(A, 2 * WINDOW) is True  # WINDOW - 1 after it was seen again
    assert len(window) == 1


def test_a_duplicate_does_not_extend_the_window() -> None:
    window = DedupWindow(max_entries=10, window_ns=WINDOW)
    window.check_and_add(A, 0)
    assert window.check_and_add(A, 90) is True
    assert window.check_and_add(A, 150) is False  # 150 after the first sighting, whatever came between


def test_forget() -> None:
    window = DedupWindow(max_entries=10, window_ns=WINDOW)
    window.check_and_add(A, 0)
    window.forget(A)
    window.forget(B)  # unknown keys are fine
    assert len(window) == 0
    assert window.check_and_add(A, 1) is False


def test_many_unique_keys_keep_memory_bounded() -> None:
    window = DedupWindow(max_entries=100, window_ns=10**12)
    for n in range(10_000):
        window.check_and_add(("dev", str(n)), n)
    assert len(window) == 100
    assert window.check_and_add(("dev", "9999"), 10_000) is True
    assert window.check_and_add(("dev", "9900"), 10_000) is True
    assert window.check_and_add(("dev", "9899"), 10_000) is False


@settings(max_examples=300, deadline=None, database=None)
@given(
    max_entries=st.integers(1, 6),
    window_ns=st.integers(1, 50),
    events=st.lists(st.tuples(st.integers(0, 9), st.integers(0, 20)), max_size=60),
)
def test_window_is_bounded_and_never_invents_duplicates(
    max_entries: int, window_ns: int, events: list[tuple[int, int]]
) -> None:
    window = DedupWindow(max_entries, window_ns)
    recorded: dict[DedupKey, int] = {}  # when each key was last taken as new
    now = 0
    for key_number, step in events:
        now += step
        key = ("dev", str(key_number))
        duplicate = window.check_and_add(key, now)
        assert len(window) <= max_entries
        if duplicate:
            # Only a key taken as new within the window can be a duplicate.
            assert key in recorded
            assert now - recorded[key] <= window_ns
        else:
            recorded[key] = now


@settings(max_examples=300, deadline=None, database=None)
@given(
    window_ns=st.integers(1, 50),
    events=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 20)), max_size=60),
)
def test_window_with_room_for_every_key_matches_a_plain_model(window_ns: int, events: list[tuple[int, int]]) -> None:
    window = DedupWindow(max_entries=6, window_ns=window_ns)  # six keys: never full
    recorded: dict[DedupKey, int] = {}
    now = 0
    for key_number, step in events:
        now += step
        key = ("dev", str(key_number))
        expected = key in recorded and now - recorded[key] <= window_ns
        assert window.check_and_add(key, now) is expected
        if not expected:
            recorded[key] = now
            # Each new key sweeps out the expired ones: what is left is exactly the keys within the window.
            assert len(window) == sum(1 for t in recorded.values() if now - t <= window_ns)
