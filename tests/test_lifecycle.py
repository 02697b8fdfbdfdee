from __future__ import annotations

import pytest

from dropreel.lifecycle import (
    Decision,
    Finished,
    Ignore,
    Observation,
    Phase,
    RemoteStatus,
    Source,
    StillRunning,
    decide,
    job_state_after_generations,
)

Q, P, S, F, C, U = (
    RemoteStatus.QUEUED,
    RemoteStatus.PROCESSING,
    RemoteStatus.SUCCEEDED,
    RemoteStatus.FAILED,
    RemoteStatus.CANCELLED,
    RemoteStatus.UNKNOWN,
)


def seen(status: RemoteStatus, url: str | None = None, error: str | None = None) -> Observation:
    return Observation("g1", status, Source.EVENT, result_url=url, error=error)


@pytest.mark.parametrize(
    ("phase", "known", "observed", "expected"),
    [
        (Phase.WAITING, Q, seen(Q), Ignore("no change")),
        (Phase.WAITING, Q, seen(P), StillRunning(P)),
        (
            Phase.WAITING,
            P,
            seen(S, url="https://r/x.mp4"),
            Finished(S, Phase.DOWNLOADING, "https://r/x.mp4", None),
        ),
        (
            Phase.WAITING,
            P,
            seen(S),
            # Paid for all the same: delivery asks the provider for a URL.
            Finished(S, Phase.DOWNLOADING, None, None),
        ),
        (
            Phase.WAITING,
            Q,
            seen(F, error="Insufficient credits"),
            Finished(F, Phase.HOOKING, None, "Insufficient credits"),
        ),
        (
            Phase.WAITING,
            Q,
            seen(F),
            Finished(F, Phase.HOOKING, None, "failed without a message from the provider"),
        ),
        (Phase.WAITING, Q, seen(C), Finished(C, Phase.HOOKING, None, "cancelled")),
        (Phase.HOOKING, S, seen(S, url="https://r/x.mp4"), Ignore("already hooking")),
        (Phase.DONE, F, seen(F), Ignore("already done")),
        (
            Phase.DOWNLOADING,
            S,
            seen(S, url="https://r/fresh.mp4"),
            Finished(S, Phase.DOWNLOADING, "https://r/fresh.mp4", None),
        ),
        (Phase.DOWNLOADING, S, seen(F, error="x"), Ignore("already downloading")),
    ],
)
def test_what_an_observation_means(
    phase: Phase, known: RemoteStatus, observed: Observation, expected: Decision
) -> None:
    assert decide(phase, known, observed) == expected


def test_a_forgotten_generation_is_never_a_success_and_says_so() -> None:
    decision = decide(Phase.WAITING, P, Observation("g1", U, Source.POLL))
    assert isinstance(decision, Finished)
    assert decision.status is U
    assert decision.next_phase is Phase.HOOKING
    assert decision.result_url is None
    assert decision.error is not None and "not resubmitted" in decision.error


@pytest.mark.parametrize(
    ("phases", "complete"),
    [
        ([], False),
        ([Phase.HOOKING], True),
        ([Phase.DONE, Phase.HOOKING], True),
        ([Phase.DONE, Phase.WAITING], False),
        ([Phase.DOWNLOADING, Phase.DONE], False),
    ],
)
def test_a_job_completes_when_every_generation_is_delivered(
    phases: list[Phase], complete: bool
) -> None:
    assert job_state_after_generations(phases) is complete


@pytest.mark.parametrize(
    ("raw", "status"),
    [("succeeded", S), ("SUCCEEDED", S), ("queued", Q), ("weird", None), (None, None)],
)
def test_status_parsing_is_lenient_about_case_only(
    raw: object, status: RemoteStatus | None
) -> None:
    assert RemoteStatus.parse(raw) is status
