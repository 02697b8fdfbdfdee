"""The OpenAI-compatible `/v1/videos` dialect of the simulator (openai-videos-api.md).

Served beside the Oxen routes, under `/v1`. A video's state follows from time alone (queued,
then in_progress with a rising `progress`, then completed or failed), so nothing needs a
scheduler. Results come either as Lumenfall's `output.url` on another origin (`localhost`
rather than `127.0.0.1`: a client must not send its key there) or as OpenAI's
`/v1/videos/{id}/content`.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from dropreel_simulator.core import SimulatedDrop, range_start

if TYPE_CHECKING:
    from dropreel_simulator.oxen import Simulator

PREFIX = "/v1"
_SIZES = ("720x1280", "1280x720", "1024x1792", "1792x1024")


@dataclass
class VideosOptions:
    """How the `/v1/videos` dialect behaves; tests may change fields while it runs."""

    # "url": Lumenfall's output.url on a media host; "content": OpenAI's content endpoint.
    result_style: Literal["url", "content"] = "url"
    complete_after_s: tuple[float, float] = (0.3, 0.8)
    failure_rate: float = 0.0
    # The next this many creates make their video, then drop the connection unanswered.
    drop_create_answers: int = 0
    # Sent as `openai-poll-after-ms` on lookups and listings, if set.
    poll_after_ms: int | None = None
    # Whether a repeated idempotency key replays the video it made (Lumenfall); False
    # makes a new video for every create (OpenAI, which documents no key).
    honour_idempotency: bool = True
    cost_per_second: float = 0.3


@dataclass
class SimVideo:
    video_id: str
    # The create's fields; an uploaded input_reference as (file name, media type, bytes).
    body: dict[str, Any]
    created_at: float
    ready_at: float
    will_fail: bool
    cancelled: bool = False

    def state(self, now: float) -> tuple[str, int]:
        """(status, progress) at `now`."""
        if self.cancelled:
            return "cancelled", 0
        started = self.created_at + (self.ready_at - self.created_at) / 3
        if now < started:
            return "queued", 0
        if now < self.ready_at:
            return "in_progress", int(100 * (now - started) / (self.ready_at - started))
        return ("failed" if self.will_fail else "completed"), 100


@dataclass
class VideosDialect:
    """The videos the simulated provider has made, and its routes."""

    sim: Simulator
    options: VideosOptions = field(default_factory=VideosOptions)
    videos: dict[str, SimVideo] = field(default_factory=dict)
    # Every create that made a video: its body and the video's id (replays excluded).
    created: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    # Creates answered with an existing video because their key was seen before.
    replays: int = 0
    # Authorization headers that reached the media host (there must be none).
    media_authorizations: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._random = random.Random(self.sim.options.seed + 1)
        self._by_key: dict[str, str] = {}
        self._lock = threading.Lock()

    def routes(self) -> list[Route]:
        return [
            Route(f"{PREFIX}/videos", self._create, methods=["POST"]),
            Route(f"{PREFIX}/videos", self._list, methods=["GET"]),
            Route(f"{PREFIX}/videos/{{video_id}}", self._get, methods=["GET"]),
            Route(f"{PREFIX}/videos/{{video_id}}", self._delete, methods=["DELETE"]),
            Route(f"{PREFIX}/videos/{{video_id}}/content", self._content, methods=["GET"]),
            Route("/media/{name}", self._media, methods=["GET"]),
        ]

    # ---- the API ----------------------------------------------------------------------

    async def _create(self, request: Request) -> Response:
        if (refused := self._gate(request, "video-create")) is not None:
            return refused
        body = await _create_body(request)
        if body is None:
            return _error(400, "INVALID_REQUEST", "body is neither JSON nor a multipart form")
        if not isinstance(body, dict) or not isinstance(body.get("prompt"), str):
            return _error(400, "INVALID_REQUEST", "prompt is required")
        model = body.get("model")
        if not isinstance(model, str) or model.startswith("bad-"):
            return _error(404, "MODEL_NOT_FOUND", f"model not found: {model}")
        if "num_generations" in body:
            return _error(400, "INVALID_REQUEST", "unknown parameter: num_generations")
        key = request.headers.get("idempotency-key") or body.get("idempotency_key")
        with self._lock:
            known = self._by_key.get(key) if key and self.options.honour_idempotency else None
            if known is not None:
                self.replays += 1
                return JSONResponse(self._view(self.videos[known]), 200)
            video = self._make(body)
            if key:
                self._by_key[key] = video.video_id
        if self.options.drop_create_answers > 0:
            self.options.drop_create_answers -= 1
            return StreamingResponse(_drop(), 200, media_type="application/json")
        return JSONResponse(self._view(video), 202)

    def _make(self, body: dict[str, Any]) -> SimVideo:
        low, high = self.options.complete_after_s
        now = time.time()
        video = SimVideo(
            video_id=f"video_{self._random.getrandbits(64):016x}",
            body=body,
            created_at=now,
            ready_at=now + self._random.uniform(low, high),
            will_fail=self._random.random() < self.options.failure_rate,
        )
        self.videos[video.video_id] = video
        self.created.append((body, video.video_id))
        return video

    async def _get(self, request: Request) -> Response:
        video_id = request.path_params["video_id"]
        if (refused := self._gate(request, "video-get", video_id)) is not None:
            return refused
        video = self.videos.get(video_id)
        if video is None:
            return _error(404, "NOT_FOUND", f"no video {video_id}")
        return self._answer(self._view(video))

    async def _list(self, request: Request) -> Response:
        if (refused := self._gate(request, "video-list")) is not None:
            return refused
        limit = max(1, min(100, int(request.query_params.get("limit", "20"))))
        newest_first = request.query_params.get("order", "desc") == "desc"
        ordered = sorted(self.videos.values(), key=lambda v: v.created_at, reverse=newest_first)
        after = request.query_params.get("after")
        if after is not None:
            ids = [v.video_id for v in ordered]
            ordered = ordered[ids.index(after) + 1 :] if after in ids else []
        page = ordered[:limit]
        return self._answer(
            {
                "object": "list",
                "data": [self._view(v) for v in page],
                "has_more": len(ordered) > limit,
                "last_id": page[-1].video_id if page else None,
            }
        )

    async def _delete(self, request: Request) -> Response:
        video_id = request.path_params["video_id"]
        if (refused := self._gate(request, "video-cancel", video_id)) is not None:
            return refused
        video = self.videos.get(video_id)
        if video is None:
            return _error(404, "NOT_FOUND", f"no video {video_id}")
        if video.state(time.time())[0] in ("queued", "in_progress"):
            video.cancelled = True
        return Response(status_code=204)

    async def _content(self, request: Request) -> Response:
        video_id = request.path_params["video_id"]
        if (refused := self._gate(request, "video-content", video_id)) is not None:
            return refused
        return self._file(request, video_id)

    async def _media(self, request: Request) -> Response:
        """The media host: presigned, no key wanted (and none may arrive)."""
        video_id = request.path_params["name"].removesuffix(".mp4")
        if (refused := self.sim._gate(request, "video-download", video_id, auth=False)) is not None:
            return refused
        if "authorization" in request.headers:
            self.media_authorizations.append(request.headers["authorization"])
        return self._file(request, video_id)

    # ---- helpers ----------------------------------------------------------------------

    def _gate(self, request: Request, kind: str, video_id: str | None = None) -> Response | None:
        return self.sim._gate(request, kind, video_id)

    def _answer(self, payload: dict[str, Any]) -> JSONResponse:
        headers = {}
        if self.options.poll_after_ms is not None:
            headers["openai-poll-after-ms"] = str(self.options.poll_after_ms)
        return JSONResponse(payload, headers=headers)

    def _file(self, request: Request, video_id: str) -> Response:
        video = self.videos.get(video_id)
        if video is None or video.state(time.time())[0] != "completed":
            return _error(404, "NOT_FOUND", "no such content")
        body = self.content(video_id)
        start = range_start(request.headers.get("range"))
        if start is not None and 0 < start < len(body):
            headers = {
                "Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}",
                "Content-Length": str(len(body) - start),
            }
            return Response(body[start:], 206, headers=headers, media_type="video/mp4")
        return Response(body, 200, media_type="video/mp4")

    def content(self, video_id: str) -> bytes:
        """The bytes served as a video's result."""
        return self.sim.content_for(video_id, self.sim.options.result_bytes)

    def media_url(self, video_id: str) -> str:
        return self.sim.base_url.replace("127.0.0.1", "localhost") + f"/media/{video_id}.mp4"

    def _view(self, video: SimVideo) -> dict[str, Any]:
        status, progress = video.state(time.time())
        seconds = int(str(video.body.get("seconds", "4")))
        view: dict[str, Any] = {
            "id": video.video_id,
            "object": "video",
            "status": status,
            "progress": progress,
            "model": video.body.get("model"),
            "prompt": video.body.get("prompt"),
            "seconds": str(video.body.get("seconds", "4")),
            "size": video.body.get("size", _SIZES[1]),
            "created_at": int(video.created_at),
            "completed_at": int(video.ready_at) if status in ("completed", "failed") else None,
        }
        cost = round(seconds * self.options.cost_per_second, 4)
        if self.options.result_style == "url":
            view["metadata"] = (
                {"cost": cost, "cost_currency": "USD"}
                if status in ("completed", "failed")
                else {"cost_estimate": cost}
            )
            if status == "completed":
                view["output"] = {
                    "url": self.media_url(video.video_id),
                    "content_type": "video/mp4",
                }
        if status == "failed":
            view["error"] = {
                "code": "generation_failed",
                "message": "the simulated upstream failed",
            }
        return view


async def _create_body(request: Request) -> dict[str, Any] | None:
    """A create's fields, sent as JSON or (with a file) as multipart/form-data."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        body: dict[str, Any] = {}
        # As a context: the uploaded files' spools are closed when it ends.
        async with request.form() as form:
            for key, value in form.multi_items():
                if isinstance(value, str):
                    body[key] = value
                else:
                    body[key] = (value.filename, value.content_type, await value.read())
        return body
    try:
        payload = await request.json()
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "error", "code": code}}, status)


async def _drop() -> Any:
    raise SimulatedDrop("simulated: the create's answer was lost")
    yield b""  # pragma: no cover - makes this an async generator
