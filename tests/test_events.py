from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator

import anyio
import httpx
import pytest
from pydantic import SecretStr

from dropreel.lifecycle import Observation, RemoteStatus, Source
from dropreel.providers.oxen.client import OxenClient
from dropreel.providers.oxen.events import interpret
from dropreel.tracking.stream import (
    Ending,
    ReconnectPolicy,
    SessionEnd,
    StreamHealth,
    run_session,
)
from dropreel_simulator.oxen import Simulator

from .daemon_harness import until

DONE = "media_generation_completed"


def completed(**fields: object) -> str:
    return json.dumps(fields)


@pytest.mark.parametrize(
    ("event_type", "data", "expected"),
    [
        (
            DONE,
            completed(generation_id="g1", status="succeeded", url="https://r/x.mp4", model="m"),
            Observation("g1", RemoteStatus.SUCCEEDED, Source.EVENT, result_url="https://r/x.mp4"),
        ),
        (
            DONE,
            completed(generation_id="g1", status="failed", error="Insufficient credits"),
            Observation("g1", RemoteStatus.FAILED, Source.EVENT, error="Insufficient credits"),
        ),
        (
            DONE,
            completed(generation_id="g1", status="succeeded", result_url="https://r/y.mp4"),
            Observation("g1", RemoteStatus.SUCCEEDED, Source.EVENT, result_url="https://r/y.mp4"),
        ),
        ("message", completed(generation_id="g1", status="succeeded"), "unrelated event type"),
        ("repo_updated", "{}", "unrelated event type"),
        (DONE, "not json", "data is not JSON"),
        (DONE, "[1, 2]", "data is not an object"),
        (DONE, completed(status="succeeded"), "no generation_id"),
        (DONE, completed(generation_id="", status="succeeded"), "no generation_id"),
        (DONE, completed(generation_id="g1", status="processing"), "is not a completion"),
        (DONE, completed(generation_id="g1", status="exploded"), "is not a completion"),
    ],
)
def test_what_an_event_means(event_type: str, data: str, expected: Observation | str) -> None:
    meaning = interpret(event_type, data)
    if isinstance(expected, str):
        assert isinstance(meaning, str) and expected in meaning
    else:
        assert meaning == expected


def client_for(transport: httpx.AsyncBaseTransport, idle_s: float = 5.0) -> OxenClient:
    http = httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(5.0))
    return OxenClient(
        http, base_url="http://oxen.test", api_key=SecretStr("k"), idle_timeout_s=idle_s
    )


def streaming(
    chunks: list[bytes], status: int = 200, ctype: str = "text/event-stream"
) -> httpx.MockTransport:
    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/events"
        assert request.headers["authorization"] == "Bearer k"
        return httpx.Response(status, headers={"content-type": ctype}, content=body())

    return httpx.MockTransport(handler)


async def collect(client: OxenClient) -> tuple[Ending, list[Observation], StreamHealth]:
    seen: list[Observation] = []

    async def on_observation(observed: Observation) -> None:
        seen.append(observed)

    health = StreamHealth()
    end = await run_session(client, health, on_observation)
    return end.ending, seen, health


async def test_events_split_mid_line_among_noise_are_all_understood() -> None:
    wire = (
        b": keep-alive\n\n"
        b"event: repo_updated\ndata: {}\n\n"
        b'event: media_generation_completed\ndata: {"generation_id":"g1","status":"succ'
        b'eeded","url":"https://r/1.mp4"}\n\n'
        b"event: media_generation_completed\ndata: garbage{\n\n"
        b'event: media_generation_completed\r\ndata: {"generation_id":"g2","status":"failed",'
        b'"error":"bad params"}\r\n\r\n'
    )
    chunks = [wire[i : i + 7] for i in range(0, len(wire), 7)]
    ending, seen, health = await collect(client_for(streaming(chunks)))
    assert ending is Ending.CLOSED_BY_SERVER
    assert [(o.generation_id, o.status) for o in seen] == [
        ("g1", RemoteStatus.SUCCEEDED),
        ("g2", RemoteStatus.FAILED),
    ]
    assert seen[0].result_url == "https://r/1.mp4"
    assert seen[1].error == "bad params"
    assert health.up is False
    assert health.connects == 1
    assert health.first_attempt_done.is_set()


async def test_a_refused_key_is_its_own_ending() -> None:
    ending, _, health = await collect(client_for(streaming([b"{}"], status=401)))
    assert ending is Ending.AUTH_REFUSED
    assert health.connects == 0


async def test_a_server_error_on_connect_is_refused_not_connected() -> None:
    ending, _, _ = await collect(client_for(streaming([b"oops"], status=503)))
    assert ending is Ending.REFUSED


async def test_a_stream_that_is_not_event_stream_is_broken() -> None:
    ending, _, _ = await collect(client_for(streaming([b"<html>"], ctype="text/html")))
    assert ending is Ending.BROKEN


async def test_nothing_listening_is_a_connect_failure() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    http = httpx.AsyncClient(timeout=httpx.Timeout(2.0))
    client = OxenClient(
        http, base_url=f"http://127.0.0.1:{port}", api_key=SecretStr("k"), idle_timeout_s=1
    )
    ending, _, health = await collect(client)
    assert ending is Ending.CONNECT_FAILED
    assert health.first_attempt_done.is_set()


async def test_a_stalled_stream_ends_within_the_idle_timeout(simulator: Simulator) -> None:
    simulator.options.keepalive_s = 60.0
    async with httpx.AsyncClient() as http:
        client = OxenClient(
            http, base_url=simulator.base_url, api_key=SecretStr("k"), idle_timeout_s=0.3
        )
        started = anyio.current_time()
        ending, _, _ = await collect(client)
    assert ending is Ending.IDLE_TIMEOUT
    assert anyio.current_time() - started < 5.0


async def test_keep_alives_hold_the_stream_open(simulator: Simulator) -> None:
    simulator.options.keepalive_s = 0.05
    async with httpx.AsyncClient() as http:
        client = OxenClient(
            http, base_url=simulator.base_url, api_key=SecretStr("k"), idle_timeout_s=0.5
        )
        health = StreamHealth()
        seen: list[Observation] = []

        async def on_observation(observed: Observation) -> None:
            seen.append(observed)

        async with anyio.create_task_group() as group:

            async def hold() -> None:
                end = await run_session(client, health, on_observation)
                assert end.ending is Ending.CLOSED_BY_SERVER
                assert end.connected_for_s is not None and end.connected_for_s >= 1.0

            group.start_soon(hold)
            await health.first_attempt_done.wait()
            await anyio.sleep(1.2)  # more than twice the idle timeout
            assert health.up
            simulator.publish(DONE, {"generation_id": "gx", "status": "failed", "error": "e"})
            await until(lambda: bool(seen))
            simulator.call_soon(simulator.drop_streams)
    assert seen == [Observation("gx", RemoteStatus.FAILED, Source.EVENT, error="e")]


def ended(ending: Ending, held_s: float | None) -> SessionEnd:
    return SessionEnd(ending, "", held_s)


def test_reconnect_backoff_grows_and_resets_only_after_a_stable_connection() -> None:
    policy = ReconnectPolicy(initial_s=1.0, max_s=8.0, stable_after_s=30.0)
    half = lambda: 0.5  # noqa: E731 - a fixed jitter makes the table exact
    delays = [
        policy.delay_after(ended(Ending.CONNECT_FAILED, None), half),
        policy.delay_after(ended(Ending.CONNECT_FAILED, None), half),
        policy.delay_after(ended(Ending.CLOSED_BY_SERVER, 2.0), half),  # a blip: no reset
        policy.delay_after(ended(Ending.IDLE_TIMEOUT, 5.0), half),
        policy.delay_after(ended(Ending.IDLE_TIMEOUT, 500.0), half),  # held: start over
    ]
    assert delays == [0.75, 1.5, 3.0, 6.0, 0.75]


def test_a_refused_key_waits_the_longest_delay_every_time() -> None:
    policy = ReconnectPolicy(initial_s=0.5, max_s=60.0, stable_after_s=30.0)
    assert [policy.delay_after(ended(Ending.AUTH_REFUSED, None)) for _ in range(3)] == [60.0] * 3
