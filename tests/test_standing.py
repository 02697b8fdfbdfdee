"""Where a job stands, from its stored rows: each case is a job's rows and what a person
should read."""

from __future__ import annotations

from typing import Any

import pytest

from dropreel.lifecycle import JobState, Phase, RemoteStatus
from dropreel.ops.standing import CANCELLED_BEFORE_SUBMISSION, Standing, standing
from dropreel.state.records import GenerationRow

from .rows import generation_row, job_row

S, P = RemoteStatus, Phase


def gen(
    idx: int, status: RemoteStatus, phase: Phase, output: str | None = None, **more: Any
) -> GenerationRow:
    return generation_row(
        generation_id=f"g{idx}",
        idx=idx,
        remote_status=status,
        phase=phase,
        output_path=output,
        **more,
    )


DELIVERED = gen(1, S.SUCCEEDED, P.DONE, "/out/cat.mp4")
DELIVERED_2 = gen(2, S.SUCCEEDED, P.DONE, "/out/cat-2.mp4")
FAILED = gen(2, S.FAILED, P.DONE, error="content policy: people")
CANCELLED = gen(1, S.CANCELLED, P.DONE, error="cancelled")
CANCELLED_2 = gen(2, S.CANCELLED, P.DONE, error="cancelled")
THREE = {"generation_count": 3}

CASES: list[tuple[str, dict[str, Any], list[GenerationRow], Standing, str]] = [
    (
        "every generation delivered, with its cost",
        {"state": JobState.COMPLETED},
        [gen(1, S.SUCCEEDED, P.DONE, "/out/cat.mp4", cost_usd=1.2)],
        Standing.DELIVERED,
        "1/1 delivered, $1.20",
    ),
    (
        "every generation delivered, its cost estimated from the model's price",
        {"state": JobState.COMPLETED},
        [gen(1, S.SUCCEEDED, P.DONE, "/out/cat.mp4", cost_usd=2.4, cost_is_estimate=True)],
        Standing.DELIVERED,
        "1/1 delivered, $2.40 (estimate)",
    ),
    (
        "some delivered, one failed",
        {"state": JobState.COMPLETED},
        [DELIVERED, FAILED],
        Standing.PARTLY_DELIVERED,
        "1/2 delivered; 1/2 failed: content policy: people",
    ),
    (
        "every generation failed (it used to read `completed 0/2 delivered`)",
        {"state": JobState.COMPLETED},
        [gen(1, S.FAILED, P.DONE, error="content policy: people"), FAILED],
        Standing.FAILED,
        "2/2 failed: content policy: people",
    ),
    (
        "succeeded at the provider but never downloaded",
        {"state": JobState.COMPLETED},
        [gen(1, S.SUCCEEDED, P.DONE, error="not downloaded within the job deadline")],
        Standing.FAILED,
        "1/1 failed: not downloaded within the job deadline",
    ),
    (
        "one failed, one cancelled",
        {"state": JobState.COMPLETED},
        [gen(1, S.FAILED, P.DONE, error="boom"), CANCELLED_2],
        Standing.FAILED,
        "1/2 failed: boom; 1/2 cancelled",
    ),
    (
        "every generation cancelled",
        {"state": JobState.COMPLETED},
        [CANCELLED, CANCELLED_2],
        Standing.CANCELLED,
        "2/2 cancelled",
    ),
    (
        "cancelled before its POST",
        {"state": JobState.FAILED, "error": CANCELLED_BEFORE_SUBMISSION},
        [],
        Standing.CANCELLED,
        CANCELLED_BEFORE_SUBMISSION,
    ),
    (
        "refused file",
        {"state": JobState.FAILED, "error": "not valid JSON: line 1 column 2"},
        [],
        Standing.FAILED,
        "not valid JSON: line 1 column 2",
    ),
    (
        "refused by the provider",
        {"state": JobState.FAILED, "error": "refused by the provider: Model not found: x"},
        [],
        Standing.FAILED,
        "refused by the provider: Model not found: x",
    ),
    (
        "parked",
        {"state": JobState.NEEDS_ATTENTION, "error": "the POST ended ambiguously (reset)"},
        [],
        Standing.PARKED,
        "the POST ended ambiguously (reset)",
    ),
    (
        "a refused key (it used to read `accepted ... -`)",
        {"state": JobState.ACCEPTED, "error": "key refused: POST /api/ai/queue -> HTTP 401: bad"},
        [],
        Standing.BLOCKED,
        "oxen refuses the key, trying again: POST /api/ai/queue -> HTTP 401: bad",
    ),
    (
        "the provider cannot be reached",
        {
            "state": JobState.ACCEPTED,
            "provider": "lumenfall",
            "error": "provider unreachable: POST /v1/videos: connection refused",
        },
        [],
        Standing.BLOCKED,
        "lumenfall cannot be reached, trying again: POST /v1/videos: connection refused",
    ),
    (
        "the provider answers 5xx to a POST sent again under its key",
        {"state": JobState.ACCEPTED, "error": "provider failing: POST /v1/videos -> HTTP 500"},
        [],
        Standing.BLOCKED,
        "oxen is failing, trying again: POST /v1/videos -> HTTP 500",
    ),
    (
        "throttled",
        {"state": JobState.ACCEPTED, "error": "throttled: POST /api/ai/queue -> HTTP 429: slow"},
        [],
        Standing.THROTTLED,
        "oxen is throttling, trying again: POST /api/ai/queue -> HTTP 429: slow",
    ),
    (
        "held by the budget, with the figures",
        {
            "state": JobState.ACCEPTED,
            "error": "budget: $1.20 spent or reserved today + $2.40 for this job would cross "
            "the daily cap of $2.00; it goes ahead when the day rolls over or the cap is raised",
        },
        [],
        Standing.HELD,
        "budget: $1.20 spent or reserved today + $2.40 for this job would cross the daily cap "
        "of $2.00; it goes ahead when the day rolls over or the cap is raised",
    ),
    (
        "accepted, not sent yet",
        {"state": JobState.ACCEPTED},
        [],
        Standing.WAITING,
        "not sent to oxen yet",
    ),
    (
        "accepted with an error an older dropreel stored",
        {"state": JobState.ACCEPTED, "error": "POST /api/ai/queue -> HTTP 401: bad"},
        [],
        Standing.WAITING,
        "not sent to oxen yet; the last try: POST /api/ai/queue -> HTTP 401: bad",
    ),
    (
        "being claimed",
        {"state": JobState.CLAIMING},
        [],
        Standing.WAITING,
        "being taken from the inbox",
    ),
    (
        "its POST on the wire, after a refusal",
        {"state": JobState.SUBMITTING, "error": "key refused: POST -> HTTP 401: bad"},
        [],
        Standing.WAITING,
        "being sent to oxen",
    ),
    (
        "queued at the provider",
        {},
        [gen(1, S.QUEUED, P.WAITING)],
        Standing.WAITING,
        "queued at oxen",
    ),
    (
        "running, with progress",
        {"provider": "lumenfall"},
        [gen(1, S.PROCESSING, P.WAITING, progress=45)],
        Standing.WAITING,
        "running (45%) at lumenfall",
    ),
    (
        "one delivered, one running, one queued",
        THREE,
        [
            DELIVERED,
            gen(2, S.PROCESSING, P.WAITING, progress=10),
            gen(3, S.QUEUED, P.WAITING),
        ],
        Standing.WAITING,
        "1/3 delivered, 1 running (10%) and 1 queued at oxen",
    ),
    (
        "submitted, its generations not recorded yet",
        {},
        [],
        Standing.WAITING,
        "submitted at oxen",
    ),
    (
        "downloading",
        {},
        [gen(1, S.SUCCEEDED, P.DOWNLOADING)],
        Standing.DELIVERING,
        "downloading",
    ),
    (
        "one delivered, one downloading",
        {},
        [DELIVERED, gen(2, S.SUCCEEDED, P.DOWNLOADING)],
        Standing.DELIVERING,
        "1/2 delivered, downloading 1",
    ),
    (
        "its hook running",
        {"state": JobState.COMPLETED},
        [gen(1, S.SUCCEEDED, P.HOOKING, "/out/cat.mp4")],
        Standing.DELIVERING,
        "1/1 delivered, running its hook",
    ),
    (
        "its hook failed and will be tried again",
        {"state": JobState.COMPLETED},
        [gen(1, S.SUCCEEDED, P.HOOKING, "/out/c.mp4", hook_attempts=2, hook_error="exit 1")],
        Standing.DELIVERING,
        "1/1 delivered, hook failed 2 times, will try again: exit 1",
    ),
    (
        "every generation done, the manifest not written yet",
        {},
        [DELIVERED],
        Standing.DELIVERING,
        "1/1 delivered, writing its manifest",
    ),
    (
        "its hook gave up",
        {"state": JobState.COMPLETED},
        [
            gen(
                1,
                S.SUCCEEDED,
                P.DONE,
                "/out/cat.mp4",
                hook_attempts=5,
                hook_error="exit status 1 after 0.02s: no route to host",
            )
        ],
        Standing.HOOK_GAVE_UP,
        "hook gave up after 5 tries: exit status 1 after 0.02s: no route to host",
    ),
    (
        "a hook gave up while another generation still runs",
        {},
        [
            gen(1, S.SUCCEEDED, P.DONE, "/o/1.mp4", hook_attempts=1, hook_error="timed out"),
            gen(2, S.PROCESSING, P.WAITING),
        ],
        Standing.HOOK_GAVE_UP,
        "hook gave up on 1 of 2 after 1 try: timed out",
    ),
]


@pytest.mark.parametrize(
    ("job", "generations", "state", "reason"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_where_a_job_stands(
    job: dict[str, Any], generations: list[GenerationRow], state: Standing, reason: str
) -> None:
    found = standing(job_row(**job), generations)
    assert (found.state, found.reason) == (state, reason)


def test_every_state_has_a_case() -> None:
    assert {case[3] for case in CASES} == set(Standing)
