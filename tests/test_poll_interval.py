"""The endpoint wait's poll schedule (serving_endpoint.poll_interval): how late a poll can see a
finished update, and how many polls a wait costs. Pure arithmetic over the schedule, no clock."""

from __future__ import annotations

from reconciler.kinds.serving_endpoint import poll_interval


def _schedule(update_seconds: float, *, eager: bool = False) -> tuple[int, float]:
    """Polls until one comes at or after `update_seconds`, and how late that one is."""
    waited, polls = 0.0, 1  # the first poll comes at once
    while waited < update_seconds:
        waited += poll_interval(waited, eager=eager)
        polls += 1
    return polls, waited - update_seconds


def test_a_short_update_is_seen_within_a_tenth_of_its_time():
    for seconds in (1, 5, 5.01, 9.9, 20):
        _, late = _schedule(seconds)
        assert late <= max(0.5, 0.1 * seconds) + 1e-9, seconds


def test_a_one_minute_update_is_seen_within_a_few_seconds_at_a_bounded_cost():
    polls, late = _schedule(60)
    assert late <= 3.0
    assert polls <= 45


def test_a_long_update_polls_at_most_every_ten_seconds_and_at_least_every_half_second():
    intervals = [poll_interval(t) for t in (0, 0.1, 1, 10, 60, 300, 1800, 7200)]
    assert all(0.5 <= i <= 10 for i in intervals)
    assert intervals == sorted(intervals)  # never polls faster as the wait grows
    polls, late = _schedule(1200)  # a 20-minute real update
    assert late <= 10 and polls <= 250


def test_a_rollout_polls_eagerly():
    assert poll_interval(0, eager=True) == 0.1
    _, late = _schedule(2, eager=True)
    assert late <= 0.15 * 2 + 1e-9
