"""One POST per job, outside the simulator's manners: gateways, lost answers, odd answers,
and a server that asks to be hammered."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from dropreel.errors import (
    AmbiguousAnswer,
    ConnectionLost,
    MalformedAnswer,
    ReadStalled,
    RetryableProviderError,
)
from dropreel.lifecycle import JobState
from dropreel.providers.base import RemoteGeneration
from dropreel.providers.http import raise_for_answer
from dropreel.state.store import Store
from dropreel_simulator.oxen import Simulator

from .daemon_harness import drop_job, run_daemon, settings_for


def outbox(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "outbox").iterdir())


async def job_states(root: Path) -> list[tuple[JobState, str | None]]:
    async with Store.open(root / "state" / "dropreel.sqlite3", read_only=True) as store:
        return [(job.state, job.error) for job in await store.jobs()]


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (429, RetryableProviderError),
        (503, RetryableProviderError),
        (500, AmbiguousAnswer),
        (502, AmbiguousAnswer),
        (504, AmbiguousAnswer),
        (520, AmbiguousAnswer),
    ],
)
def test_only_429_and_503_prove_nothing_was_created(status: int, error: type[Exception]) -> None:
    request = httpx.Request("POST", "http://api.test/api/ai/queue")
    with pytest.raises(error):
        raise_for_answer(httpx.Response(status, request=request), "POST /api/ai/queue")


@pytest.mark.parametrize("gateway_status", [502, 504])
async def test_a_gateway_error_after_creation_is_settled_never_resent(
    tmp_path: Path, simulator: Simulator, gateway_status: int
) -> None:
    simulator.options.fail_after_create = [gateway_status]
    settings = settings_for(tmp_path, simulator)
    drop_job(tmp_path / "inbox", "gateway.json", json.dumps({"prompt": "p", "num_generations": 2}))
    await run_daemon(settings)
    assert simulator.count("enqueue") == 1, "a 502/504 is no proof that nothing was created"
    assert len(simulator.generations) == 2
    assert outbox(tmp_path) == ["gateway-1.mp4", "gateway-2.mp4", "gateway.result.json"]
    assert await job_states(tmp_path) == [(JobState.COMPLETED, None)]


class AnswerLost:
    """The real provider, except that the POST's answer never arrives (reset, time-out)."""

    def __init__(self, provider: Any, lost: Callable[[str], Exception]) -> None:
        self._provider = provider
        self._lost = lost

    def __getattr__(self, name: str) -> Any:
        return getattr(self._provider, name)

    async def enqueue(self, body: Mapping[str, Any], **options: Any) -> list[RemoteGeneration]:
        await self._provider.enqueue(body, **options)
        raise self._lost("the answer was lost on the way back")


@pytest.mark.parametrize(
    "lost",
    [
        lambda why: ReadStalled("POST /api/ai/queue", why),
        lambda why: ConnectionLost("POST /api/ai/queue", why),
        MalformedAnswer,
    ],
    ids=["time-out", "reset", "unreadable"],
)
async def test_a_post_whose_answer_is_lost_is_adopted_from_the_listing(
    tmp_path: Path, simulator: Simulator, lost: Callable[[str], Exception]
) -> None:
    settings = settings_for(tmp_path, simulator)
    drop_job(tmp_path / "inbox", "reset.txt", "the answer is lost")
    await run_daemon(settings, provider_wrapper=lambda p: AnswerLost(p, lost))
    assert simulator.count("enqueue") == 1
    assert outbox(tmp_path) == ["reset.mp4", "reset.result.json"]


class AnswersWithAnotherJobsGeneration:
    def __init__(self, provider: Any) -> None:
        self._provider = provider
        self.first: list[RemoteGeneration] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._provider, name)

    async def enqueue(self, body: Mapping[str, Any], **options: Any) -> list[RemoteGeneration]:
        created: list[RemoteGeneration] = await self._provider.enqueue(body, **options)
        if not self.first:
            self.first = created
            return created
        return [*self.first]  # a broken answer: ids that belong to the first job


async def test_an_answer_naming_another_jobs_generation_parks_the_job_without_a_crash(
    tmp_path: Path, simulator: Simulator
) -> None:
    settings = settings_for(tmp_path, simulator, submit={"concurrency": 1})
    drop_job(tmp_path / "inbox", "a.txt", "first")
    drop_job(tmp_path / "inbox", "b.txt", "second")
    await run_daemon(settings, provider_wrapper=AnswersWithAnotherJobsGeneration)
    states = sorted((state.value, error or "") for state, error in await job_states(tmp_path))
    assert states[0] == ("completed", "")
    assert states[1][0] == "needs_attention"
    assert "belongs to job" in states[1][1]


async def test_retry_after_zero_does_not_become_a_hot_loop(
    tmp_path: Path, simulator: Simulator
) -> None:
    simulator.options.fail_next["enqueue"] = [(429, {"Retry-After": "0"})] * 3
    settings = settings_for(tmp_path, simulator)
    drop_job(tmp_path / "inbox", "busy.txt", "p")
    await run_daemon(settings, timeout_s=60)
    posts = [r.at for r in simulator.requests if r.kind == "enqueue"]
    assert len(posts) == 4
    gaps = [b - a for a, b in itertools.pairwise(posts)]
    assert min(gaps) >= 0.9, gaps


async def test_the_request_rate_has_a_ceiling_even_when_the_listing_fails(
    tmp_path: Path, simulator: Simulator
) -> None:
    """With the listing broken, each reconcile GETs every pending generation: bounded."""
    simulator.options.hold = True
    simulator.options.refuse_events_with = 503  # no stream: the daemon polls
    simulator.options.fail_next["list"] = [(500, {})] * 10_000
    rate = 20.0
    settings = settings_for(
        tmp_path, simulator, oxen={"max_requests_per_s": rate}, poll={"interval_s": 0.01}
    )
    for n in range(4):
        drop_job(
            tmp_path / "inbox", f"p{n}.json", json.dumps({"prompt": str(n), "num_generations": 4})
        )
    stop = anyio.Event()

    async def stop_later() -> None:
        await anyio.sleep(3.0)
        stop.set()

    async with anyio.create_task_group() as group:
        group.start_soon(stop_later)
        await run_daemon(settings, until_idle=False, stop=stop)
    api = sorted(r.at for r in simulator.requests if r.kind in ("get", "list", "enqueue", "record"))
    assert len(api) > rate, "the daemon did poll"
    # Any one-second window holds at most the rate plus the bucket's burst.
    busiest = max(sum(1 for t in api if start <= t < start + 1.0) for start in api)
    assert busiest <= 2 * rate + 1, busiest
