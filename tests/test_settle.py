from __future__ import annotations

from typing import Any

import pytest

from dropreel.lifecycle import RemoteStatus
from dropreel.providers.base import Adopt, RemoteGeneration, Unsettled
from dropreel.providers.settle import settle_lost_post

REQUEST = {"model": "sora", "prompt": "a fox", "seconds": "8", "num_generations": 2}
POSTED_AT = 1_000_000.0


def row(generation_id: str, at: float = POSTED_AT + 1, **fields: Any) -> RemoteGeneration:
    echoed = {"model_name": "sora", "prompt": "a fox", "seconds": "8", **fields}
    return RemoteGeneration(
        generation_id,
        RemoteStatus.QUEUED,
        enqueued_at=at,
        row={"generation_id": generation_id, **echoed},
    )


def settle(
    candidates: list[RemoteGeneration],
    taken: set[str] | None = None,
    request: dict[str, Any] | None = None,
) -> Adopt | Unsettled:
    return settle_lost_post(
        request or REQUEST, POSTED_AT, window_s=70, candidates=candidates, taken=taken or set()
    )


def adopted(outcome: Adopt | Unsettled) -> list[str]:
    assert isinstance(outcome, Adopt), outcome
    return [g.generation_id for g in outcome.generations]


def test_the_generations_a_lost_post_created_are_adopted() -> None:
    assert adopted(settle([row("a"), row("b", at=POSTED_AT + 2)])) == ["a", "b"]


@pytest.mark.parametrize(
    "stranger",
    [
        row("x", prompt="a dog"),
        row("x", seconds="4"),
        row("x", model_name="other-model"),
        row("x", at=POSTED_AT - 3600),
        row("x", at=POSTED_AT + 3600),
        RemoteGeneration("x", RemoteStatus.QUEUED, enqueued_at=None, row={"prompt": "a fox"}),
    ],
)
def test_a_different_request_or_time_is_never_adopted(stranger: RemoteGeneration) -> None:
    outcome = settle([row("a"), stranger])
    assert isinstance(outcome, Unsettled) and "only 1 of 2" in outcome.reason


def test_ids_another_job_owns_are_not_adopted() -> None:
    assert adopted(settle([row("a"), row("b"), row("c")], taken={"a"})) == ["b", "c"]


def test_the_older_field_name_for_the_model_is_understood() -> None:
    old = [row("a", model="sora"), row("b", model="sora")]
    for generation in old:
        generation.row.pop("model_name")  # type: ignore[attr-defined]
    assert adopted(settle(old)) == ["a", "b"]


def test_nothing_found_is_unsettled_and_says_what_to_do() -> None:
    outcome = settle([])
    assert isinstance(outcome, Unsettled)
    assert "probably never created" in outcome.reason and "dropreel retry" in outcome.reason


def test_two_identical_lost_posts_share_the_matches_in_order() -> None:
    candidates = [row(c, at=POSTED_AT + n) for n, c in enumerate("abcd")]
    first = adopted(settle(candidates))
    second = adopted(settle(candidates, taken=set(first)))
    assert (first, second) == (["a", "b"], ["c", "d"])
