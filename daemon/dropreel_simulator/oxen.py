"""The simulator's Oxen dialect: the async queue and its event stream, as oxen-api.md says."""

from __future__ import annotations

import asyncio
import copy
import gzip
import hashlib
import heapq
import json
import math
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectSendStream
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from dropreel_simulator.core import (
    SimulatedDrop,
    bind_loopback,
    half_then_drop,
    make_server,
    range_start,
    serving,
)
from dropreel_simulator.models import CATALOGUE
from dropreel_simulator.openai_videos import VideosDialect

__all__ = [
    "SimulatedDrop",
    "Simulator",
    "SimulatorOptions",
    "bind_loopback",
    "make_server",
    "running_simulator",
]

TERMINAL = ("succeeded", "failed", "cancelled")
_SUBSCRIBER_BUFFER = 100_000


@dataclass
class SimulatorOptions:
    """How the simulated provider behaves; tests may change fields while it runs."""

    complete_after_s: tuple[float, float] = (0.2, 0.6)
    failure_rate: float = 0.0
    result_bytes: int = 256 * 1024
    keepalive_s: float = 15.0
    # None accepts any bearer token; a string accepts only that one.
    api_key: str | None = None
    # The older docs: terminal generations answer 404 on GET, the list carries only
    # active rows without result_url, and new generations start as `processing`.
    legacy_api: bool = False
    seed: int = 0
    # Finish each new generation and announce it before the POST is answered (the race).
    complete_before_answer: bool = False
    # Answer /api/events with this status instead of a stream (None: stream normally).
    refuse_events_with: int | None = None
    # Scripted failures: request kind ("enqueue", "get", "list", "record", "events",
    # "download", "cancel", "model") -> statuses (with headers) for its next requests, one each.
    fail_next: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)
    # Event streams send nothing at all, not even keep-alives, while this is set.
    stall_streams: bool = False
    # Around each completion: garbage data, an unrelated event type and a duplicate.
    noisy_events: bool = False
    # The next this many downloads send half their body, then drop the connection.
    cut_downloads: int = 0
    # Completion events carry result URLs that have already expired (REST has fresh ones).
    expired_event_urls: bool = False
    # New generations wait (processing) until release_held() lets them finish.
    hold: bool = False
    # Completion events carry this instead of the result URL ("" leaves the field out);
    # REST keeps answering with the real one.
    event_url_override: str | None = None
    # Results are served gzip-compressed (Content-Encoding: gzip), as some CDNs do.
    gzip_downloads: bool = False
    # A gateway in front of the provider: the next POSTs create their generations, then
    # are answered with these statuses (502, 504 ...) instead of the generations.
    fail_after_create: list[int] = field(default_factory=list)
    # Error bodies and failure messages quote the request's Authorization header, as a
    # gateway in debug mode does.
    echo_credentials: bool = False


@dataclass
class SimGeneration:
    generation_id: str
    model: str
    prompt: str | None
    params: dict[str, Any]
    status: str
    enqueued_at: float
    due_at: float
    will_fail: bool
    started_at: float | None = None
    completed_at: float | None = None
    error: str | None = None
    # The bearer token that created it: which client a download belongs to.
    owner: str = ""


@dataclass
class RequestRecord:
    at: float
    method: str
    kind: str
    generation_id: str | None
    streams_open: int
    # Seconds since the newest event stream connected, if any is open.
    stream_age_s: float | None = None
    # The bearer token used ("" for presigned downloads): tells clients apart.
    client: str = ""


@dataclass
class Simulator:
    """The provider's state, its request log and its event subscribers."""

    options: SimulatorOptions = field(default_factory=SimulatorOptions)
    base_url: str = "http://127.0.0.1"
    generations: dict[str, SimGeneration] = field(default_factory=dict)
    requests: list[RequestRecord] = field(default_factory=list)
    events_sent: list[dict[str, Any]] = field(default_factory=list)
    # Every POST that created generations: its body and the ids it created.
    enqueued: list[tuple[dict[str, Any], list[str]]] = field(default_factory=list)
    # When a POST that created generations was answered with a gateway error instead.
    ambiguous_answers: list[float] = field(default_factory=list)
    # The model objects served at /api/ai/models/{model}; tests may add or change some.
    models: dict[str, dict[str, Any]] = field(default_factory=lambda: copy.deepcopy(CATALOGUE))

    def __post_init__(self) -> None:
        self.videos = VideosDialect(self)
        self._random = random.Random(self.options.seed)
        self._subscribers: set[MemoryObjectSendStream[bytes]] = set()
        self._due: list[tuple[float, str]] = []
        self._wake: anyio.Event | None = None
        self._group: TaskGroup | None = None
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.url_epoch = 0
        self._newest_stream_at: float | None = None

    # ---- what tests read --------------------------------------------------------------

    def count(self, kind: str) -> int:
        with self._lock:
            return sum(1 for r in self.requests if r.kind == kind)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(Counter(r.kind for r in self.requests))

    def polls_while_streaming(self, *, after_connect_grace_s: float | None = None) -> int:
        """Status look-ups made while an event stream was connected.

        With a grace, look-ups within that long of the newest connect are not counted:
        the one reconcile a client owes after (re)connecting. Nor are those within that
        long of an ambiguous answer to a POST: the listing that settles it, not a poll.
        """
        grace = after_connect_grace_s

        def settling(at: float) -> bool:
            return grace is not None and any(0 <= at - t <= grace for t in self.ambiguous_answers)

        def counted(r: RequestRecord) -> bool:
            if r.kind not in ("get", "list", "record") or not r.streams_open:
                return False
            if settling(r.at):
                return False
            return grace is None or r.stream_age_s is None or r.stream_age_s > grace

        with self._lock:
            return sum(1 for r in self.requests if counted(r))

    @property
    def streams_open(self) -> int:
        return len(self._subscribers)

    def served_bytes(self, generation_id: str) -> bytes:
        """The result's bytes exactly as a download serves them (compressed, if it does)."""
        body = self.content_for(generation_id, self.options.result_bytes)
        return gzip.compress(body, mtime=0) if self.options.gzip_downloads else body

    @staticmethod
    def content_for(generation_id: str, size: int) -> bytes:
        """The bytes served as a generation's result: deterministic, unique per id."""
        seed = hashlib.sha256(generation_id.encode()).digest()
        block = b"\x00\x00\x00\x18ftypmp42" + seed * 64
        return (block * (size // len(block) + 1))[:size]

    # ---- the app ------------------------------------------------------------------------

    def app(self) -> Starlette:
        routes = [
            Route("/api/ai/queue", self._enqueue, methods=["POST"]),
            Route("/api/ai/queue", self._list, methods=["GET"]),
            Route("/api/ai/queue/{generation_id}", self._get, methods=["GET"]),
            Route("/api/ai/queue/{generation_id}", self._cancel, methods=["DELETE"]),
            Route("/api/ai/generations/{generation_id}", self._record, methods=["GET"]),
            Route("/api/ai/models/{model}", self._model, methods=["GET"]),
            Route("/api/events", self._events, methods=["GET"]),
            Route("/api/repos/sim/files/{name}", self._download, methods=["GET"]),
            Route("/_sim/stats", self._stats, methods=["GET"]),
            *self.videos.routes(),
        ]
        return Starlette(routes=routes, lifespan=self._lifespan)

    def call_soon(self, action: Callable[[], None]) -> None:
        """Run `action` on the server's own loop (the simulator is not thread-safe)."""
        if self._loop is None:
            action()
        else:
            self._loop.call_soon_threadsafe(action)

    @asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        self._loop = asyncio.get_running_loop()
        async with anyio.create_task_group() as group:
            self._group = group
            self._wake = anyio.Event()
            group.start_soon(self._scheduler)
            yield
            group.cancel_scope.cancel()

    def _gate(
        self, request: Request, kind: str, generation_id: str | None = None, *, auth: bool = True
    ) -> Response | None:
        """Record a request; answer it here if it is refused or a failure is scripted."""
        now = time.time()
        open_streams = len(self._subscribers)
        age = now - self._newest_stream_at if open_streams and self._newest_stream_at else None
        token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        with self._lock:
            self.requests.append(
                RequestRecord(now, request.method, kind, generation_id, open_streams, age, token)
            )
        if auth and not self._authorised(request):
            return self._unauthenticated()
        scripted = self.options.fail_next.get(kind)
        if scripted:
            status, headers = scripted.pop(0)
            message = f"simulated {status}"
            if self.options.echo_credentials:
                message += f"; request had authorization: {request.headers.get('authorization')}"
            return JSONResponse({"error": {"message": message}}, status, headers=headers)
        return None

    def _authorised(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
        if not token:
            return False
        return self.options.api_key is None or token == self.options.api_key

    @staticmethod
    def _unauthenticated() -> JSONResponse:
        return JSONResponse({"status": "error", "status_message": "unauthenticated"}, 401)

    @staticmethod
    def _not_found(what: str) -> JSONResponse:
        return JSONResponse(
            {
                "error": {"type": "resource_not_found", "title": f"{what} not found"},
                "status": "error",
                "status_message": "resource_not_found",
            },
            404,
        )

    async def _enqueue(self, request: Request) -> Response:
        if (refused := self._gate(request, "enqueue")) is not None:
            return refused
        body = await _enqueue_body(request)
        if isinstance(body, Response):
            return body
        model, count = body["model"], body.get("num_generations", 1)
        params = {k: v for k, v in body.items() if k not in ("model", "num_generations")}
        created = [self._create(model, params) for _ in range(count)]
        owner = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        for generation in created:
            generation.owner = owner
        with self._lock:
            self.enqueued.append((body, [g.generation_id for g in created]))
        if self.options.complete_before_answer:
            for generation in created:
                self.finish(generation.generation_id)
            # Let the stream writers flush the events before this answer goes out.
            await anyio.sleep(0.05)
        if self.options.fail_after_create:
            status = self.options.fail_after_create.pop(0)
            with self._lock:
                self.ambiguous_answers.append(time.time())
            return JSONResponse({"error": {"message": f"gateway {status}"}}, status)
        # The answer states each generation as it was created, even if it finished since.
        initial = "processing" if self.options.legacy_api else "queued"
        rows = [{"generation_id": g.generation_id, "status": initial} for g in created]
        return JSONResponse({"generations": rows})

    def _create(self, model: str, params: dict[str, Any]) -> SimGeneration:
        low, high = self.options.complete_after_s
        now = time.time()
        generation = SimGeneration(
            generation_id=str(uuid.UUID(int=self._random.getrandbits(128), version=4)),
            model=model,
            prompt=params.get("prompt"),
            params=params,
            status="processing" if self.options.legacy_api else "queued",
            enqueued_at=now,
            due_at=math.inf if self.options.hold else now + self._random.uniform(low, high),
            will_fail=self._random.random() < self.options.failure_rate,
        )
        self.generations[generation.generation_id] = generation
        if not self.options.hold:
            self._schedule(generation)
        return generation

    def _schedule(self, generation: SimGeneration) -> None:
        heapq.heappush(self._due, (generation.due_at, generation.generation_id))
        if self._wake is not None:
            self._wake.set()

    def release_held(self, rate_per_s: float, ids: list[str] | None = None) -> None:
        """Let held generations finish, one every 1/rate seconds from now, in creation order.

        Call it through call_soon from another thread.
        """
        held = [
            g
            for g in self.generations.values()
            if g.due_at == math.inf and (ids is None or g.generation_id in ids)
        ]
        start = time.time()
        for n, generation in enumerate(held):
            generation.due_at = start + n / rate_per_s
            self._schedule(generation)

    def seed_held(self, count: int, model: str = "seeded-model") -> list[str]:
        """Create generations directly, processing and held (for scale benchmarks)."""
        was = self.options.hold
        self.options.hold = True
        try:
            ids = [
                self._create(model, {"prompt": f"seeded {n}"}).generation_id for n in range(count)
            ]
        finally:
            self.options.hold = was
        for generation_id in ids:
            self.generations[generation_id].status = "processing"
        return ids

    async def _scheduler(self) -> None:
        while True:
            now = time.time()
            while self._due and self._due[0][0] <= now:
                _, generation_id = heapq.heappop(self._due)
                self.finish(generation_id)
            assert self._wake is not None
            self._wake = anyio.Event()
            timeout = (self._due[0][0] - now) if self._due else 3600.0
            with anyio.move_on_after(max(0.0, timeout)):
                await self._wake.wait()

    def finish(self, generation_id: str) -> None:
        """Complete a generation now, as the simulated model would, and announce it."""
        generation = self.generations.get(generation_id)
        if generation is None or generation.status in TERMINAL:
            return
        generation.started_at = generation.started_at or generation.enqueued_at
        generation.completed_at = time.time()
        if generation.will_fail:
            generation.status = "failed"
            generation.error = "simulated failure"
            if self.options.echo_credentials:
                generation.error += f"; request had authorization: Bearer {generation.owner}"
            data: dict[str, Any] = {
                "generation_id": generation_id,
                "status": "failed",
                "media_type": "video",
                "error": generation.error,
            }
        else:
            generation.status = "succeeded"
            data = {
                "generation_id": generation_id,
                "status": "succeeded",
                "media_type": "video",
                "model": generation.model,
                "url": self.result_url(generation_id),
            }
            if self.options.expired_event_urls:
                data["url"] = data["url"].replace(f"sig={self.url_epoch}", "sig=expired")
            if self.options.event_url_override == "":
                del data["url"]
            elif self.options.event_url_override is not None:
                data["url"] = self.options.event_url_override
        if self.options.noisy_events:
            self.publish("media_generation_completed", "{not json at all")
            self.publish("repo_updated", {"generation_id": generation_id, "status": "succeeded"})
        self.publish("media_generation_completed", data)
        if self.options.noisy_events:
            self.publish("media_generation_completed", data)

    def publish(self, event_type: str, data: dict[str, Any] | str) -> None:
        """Send one event to every connected stream (none are replayed later)."""
        text = data if isinstance(data, str) else json.dumps(data)
        if isinstance(data, dict):
            self.events_sent.append(data)
        frame = f"event: {event_type}\ndata: {text}\n\n".encode()
        for subscriber in list(self._subscribers):
            try:
                subscriber.send_nowait(frame)
            except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._subscribers.discard(subscriber)
                subscriber.close()

    def drop_streams(self) -> None:
        """End every open event stream now."""
        for subscriber in list(self._subscribers):
            self._subscribers.discard(subscriber)
            subscriber.close()

    def result_url(self, generation_id: str) -> str:
        return f"{self.base_url}/api/repos/sim/files/{generation_id}.mp4?sig={self.url_epoch}"

    def expire_result_urls(self) -> None:
        """Every result URL handed out so far answers 403 from now on; REST gives fresh ones."""
        self.url_epoch += 1

    def _rest_view(self, generation: SimGeneration) -> dict[str, Any]:
        succeeded = generation.status == "succeeded"
        view: dict[str, Any] = {
            "generation_id": generation.generation_id,
            "model_name": generation.model,
            "prompt": generation.prompt,
            "media_type": "video",
            "status": generation.status,
            "result_url": self.result_url(generation.generation_id) if succeeded else None,
            "error_message": generation.error,
            "enqueued_at": int(generation.enqueued_at),
            "started_at": int(generation.started_at) if generation.started_at else None,
            "completed_at": int(generation.completed_at) if generation.completed_at else None,
        }
        for key, value in generation.params.items():
            view.setdefault(key, value)
        if self.options.legacy_api:
            view["model"] = view.pop("model_name")
        return view

    async def _get(self, request: Request) -> Response:
        generation_id = request.path_params["generation_id"]
        if (refused := self._gate(request, "get", generation_id)) is not None:
            return refused
        generation = self.generations.get(generation_id)
        if generation is None:
            return self._not_found("generation")
        if self.options.legacy_api and generation.status in TERMINAL:
            return self._not_found("generation")
        return JSONResponse(self._rest_view(generation))

    async def _record(self, request: Request) -> Response:
        generation_id = request.path_params["generation_id"]
        if (refused := self._gate(request, "record", generation_id)) is not None:
            return refused
        generation = self.generations.get(generation_id)
        if generation is None:
            return self._not_found("generation")
        return JSONResponse(
            {
                "generation": {**self._rest_view(generation), "cost": 0.0},
                "status": "success",
                "status_message": "resource_found",
            }
        )

    async def _list(self, request: Request) -> Response:
        if (refused := self._gate(request, "list")) is not None:
            return refused
        wanted = request.query_params.get("status")
        rows = []
        for generation in self.generations.values():
            active = generation.status not in TERMINAL
            if self.options.legacy_api or wanted is None:
                if not active:
                    continue
            elif generation.status != wanted:
                continue
            view = self._rest_view(generation)
            if self.options.legacy_api:
                view.pop("result_url")
            rows.append(view)
        return JSONResponse({"count": len(rows), "generations": rows})

    async def _model(self, request: Request) -> Response:
        model = request.path_params["model"]
        if (refused := self._gate(request, "model")) is not None:
            return refused
        found = self.models.get(model)
        if found is None:
            return JSONResponse({"error": {"message": f"Model not found: {model}"}}, 404)
        return JSONResponse(found)

    async def _cancel(self, request: Request) -> Response:
        generation_id = request.path_params["generation_id"]
        if (refused := self._gate(request, "cancel", generation_id)) is not None:
            return refused
        generation = self.generations.get(generation_id)
        if generation is None or (self.options.legacy_api and generation.status in TERMINAL):
            return self._not_found("generation")
        if generation.status not in TERMINAL:
            generation.status = "cancelled"
            generation.completed_at = time.time()
        return JSONResponse({"status": "success", "generation_id": generation_id})

    async def _events(self, request: Request) -> Response:
        if (refused := self._gate(request, "events")) is not None:
            return refused
        if self.options.refuse_events_with is not None:
            status = self.options.refuse_events_with
            return JSONResponse({"error": {"message": f"simulated {status}"}}, status)
        send, receive = anyio.create_memory_object_stream[bytes](_SUBSCRIBER_BUFFER)
        # Subscribed before the answer is sent: events from now on reach this caller.
        self._subscribers.add(send)
        self._newest_stream_at = time.time()
        keepalive_s = self.options.keepalive_s

        async def frames() -> AsyncIterator[bytes]:
            try:
                async with receive:
                    while True:
                        with anyio.move_on_after(keepalive_s) as idle:
                            frame = await receive.receive()
                        if self.options.stall_streams:
                            continue  # the socket stays open; nothing reaches the client
                        if idle.cancelled_caught:
                            yield b": keep-alive\n\n"
                        else:
                            yield frame
            except anyio.EndOfStream:
                return
            finally:
                self._subscribers.discard(send)
                send.close()

        return StreamingResponse(
            frames(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def _download(self, request: Request) -> Response:
        generation_id = request.path_params["name"].removesuffix(".mp4")
        # Presigned: the signature, not the bearer key, grants access.
        if (refused := self._gate(request, "download", generation_id, auth=False)) is not None:
            return refused
        generation = self.generations.get(generation_id)
        if generation is None or generation.status != "succeeded":
            return Response("no such object", 404)
        if request.query_params.get("sig") != str(self.url_epoch):
            return Response("signature expired", 403)
        body = self.content_for(generation_id, self.options.result_bytes)
        if self.options.gzip_downloads:
            return Response(
                self.served_bytes(generation_id),
                headers={"Content-Encoding": "gzip"},
                media_type="video/mp4",
            )
        start = range_start(request.headers.get("range"))
        headers = {"Content-Length": str(len(body))}
        status = 200
        if start is not None and 0 < start < len(body):
            headers = {
                "Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}",
                "Content-Length": str(len(body) - start),
            }
            body, status = body[start:], 206
        if self.options.cut_downloads > 0:
            self.options.cut_downloads -= 1
            return StreamingResponse(
                half_then_drop(body), status, headers=headers, media_type="video/mp4"
            )
        return Response(body, status, headers=headers, media_type="video/mp4")

    async def _stats(self, _request: Request) -> Response:
        return JSONResponse(
            {
                "requests": self.counts(),
                "polls_while_streaming": self.polls_while_streaming(),
                "streams_open": self.streams_open,
                "generations": dict(Counter(g.status for g in self.generations.values())),
            }
        )


async def _enqueue_body(request: Request) -> dict[str, Any] | Response:
    """The enqueue body, validated as Oxen does at enqueue; else the error answer."""
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _invalid("body is not JSON")
    if not isinstance(body, dict):
        return _invalid("body must be an object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return _invalid("model is required")
    if model.startswith("bad-") or model == "no-such-model":
        return JSONResponse({"error": {"message": f"Model not found: {model}"}}, 404)
    count = body.get("num_generations", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 4:
        return _invalid("num_generations must be between 1 and 4")
    return body


def _invalid(detail: str) -> JSONResponse:
    return JSONResponse(
        {
            "error": {"type": "invalid_params", "title": "Invalid parameters", "detail": detail},
            "status": "error",
            "status_message": "invalid_params",
        },
        400,
    )


@contextmanager
def running_simulator(
    simulator: Simulator | None = None, *, port: int = 0, timeout_s: float = 10.0
) -> Iterator[Simulator]:
    """Serve a simulator (a fresh one unless given) for the duration of the block."""
    with serving(simulator or Simulator(), port=port, timeout_s=timeout_s) as sim:
        yield sim
