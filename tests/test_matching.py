from __future__ import annotations

from dropreel.lifecycle import Observation, RemoteStatus, Source
from dropreel.tracking.matching import Matcher

from .test_clock import Clocks


def event(generation_id: str) -> Observation:
    return Observation(generation_id, RemoteStatus.SUCCEEDED, Source.EVENT, result_url="u")


def test_an_event_for_a_waiting_generation_finds_its_job() -> None:
    matcher = Matcher()
    matcher.register("job1", [("g1", RemoteStatus.QUEUED)])
    found = matcher.route(event("g1"), keep_if_unknown=True)
    assert found is not None and found.job_id == "job1"


def test_an_event_before_the_post_answer_is_handed_over_on_register() -> None:
    matcher = Matcher()
    assert matcher.route(event("g1"), keep_if_unknown=True) is None
    early = matcher.register("job1", [("g1", RemoteStatus.QUEUED), ("g2", RemoteStatus.QUEUED)])
    assert early == [event("g1")]
    assert matcher.early_count == 0


def test_unknown_polls_are_not_kept() -> None:
    matcher = Matcher()
    matcher.route(Observation("g1", RemoteStatus.FAILED, Source.POLL), keep_if_unknown=False)
    assert matcher.register("job1", [("g1", RemoteStatus.QUEUED)]) == []


def test_early_events_expire_and_are_bounded() -> None:
    now = [0.0]
    matcher = Matcher(early_ttl_s=10, early_max=3, monotonic=lambda: now[0])
    for n in range(5):
        matcher.route(event(f"g{n}"), keep_if_unknown=True)
    assert matcher.early_count == 3
    now[0] = 11.0
    matcher.route(event("late"), keep_if_unknown=True)
    assert matcher.early_count == 1
    assert matcher.register("j", [("g4", RemoteStatus.QUEUED)]) == []
    assert matcher.register("j", [("late", RemoteStatus.QUEUED)]) == [event("late")]


def test_forgotten_generations_no_longer_match() -> None:
    matcher = Matcher()
    matcher.register("job1", [("g1", RemoteStatus.QUEUED)])
    matcher.forget("g1")
    assert matcher.route(event("g1"), keep_if_unknown=False) is None


def test_a_generation_is_overdue_only_once_its_deadline_has_really_passed() -> None:
    clocks = Clocks(wall=50_000.0)
    matcher = Matcher(clock=clocks.clock())
    matcher.register("job1", [("g1", RemoteStatus.QUEUED)], enqueued_at=49_000.0)
    assert matcher.overdue(3_600.0) == []
    clocks.monotonic_now += 2_601.0
    assert matcher.overdue(3_600.0) == ["g1"]


def test_a_forward_jump_of_the_wall_clock_makes_nothing_overdue() -> None:
    clocks = Clocks(wall=50_000.0)
    matcher = Matcher(clock=clocks.clock())
    matcher.register("job1", [("g1", RemoteStatus.QUEUED)], enqueued_at=49_990.0)
    clocks.wall_now += 10 * 86_400
    clocks.monotonic_now += 5.0
    assert matcher.overdue(86_400.0) == []
