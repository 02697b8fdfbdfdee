"""What a `/v1/videos` answer means in dropreel's terms. Pure.

One video object shape serves both services (openai-videos-api.md): Lumenfall carries
`output.url` and `metadata.cost`; OpenAI has neither, and serves the file from
`/videos/{id}/content` instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dropreel.errors import MalformedAnswer
from dropreel.lifecycle import RemoteStatus
from dropreel.ops.redact import redact
from dropreel.providers.base import RemoteGeneration
from dropreel.providers.urls import usable_result_url

_MAX_MESSAGE_CHARS = 500

_STATUSES = {
    "queued": RemoteStatus.QUEUED,
    "in_progress": RemoteStatus.PROCESSING,
    "processing": RemoteStatus.PROCESSING,
    "completed": RemoteStatus.SUCCEEDED,
    "succeeded": RemoteStatus.SUCCEEDED,
    "failed": RemoteStatus.FAILED,
    "cancelled": RemoteStatus.CANCELLED,
    "canceled": RemoteStatus.CANCELLED,
    # The result can no longer be had: as good as failed, and said so.
    "expired": RemoteStatus.FAILED,
}


def parse_video(payload: object, what: str, *, content_url: str) -> RemoteGeneration:
    """A video object as a RemoteGeneration; `content_url` is where its file is served when
    the object names no URL of its own (`{base}/videos/{id}/content`, with `{id}` filled)."""
    if not isinstance(payload, Mapping):
        raise MalformedAnswer(f"{what}: expected a video object")
    video_id = payload.get("id")
    raw_status = payload.get("status")
    status = _STATUSES.get(str(raw_status).lower()) if isinstance(raw_status, str) else None
    if not isinstance(video_id, str) or not video_id or status is None:
        raise MalformedAnswer(f"{what}: video without a usable id or status")
    url = None
    if status is RemoteStatus.SUCCEEDED:
        output = payload.get("output")
        listed = output.get("url") if isinstance(output, Mapping) else None
        url = usable_result_url(listed) or content_url.replace("{id}", video_id)
    cost, estimate = _cost(payload.get("metadata"))
    created = payload.get("created_at")
    return RemoteGeneration(
        generation_id=video_id,
        status=status,
        result_url=url,
        error=_error(payload, raw_status),
        enqueued_at=float(created) if isinstance(created, int | float) else None,
        row=payload,
        progress=_progress(payload.get("progress")),
        cost_usd=cost,
        cost_is_estimate=estimate,
    )


def _error(payload: Mapping[str, Any], raw_status: object) -> str | None:
    error = payload.get("error")
    if isinstance(error, Mapping):
        parts = [error.get("code"), error.get("message")]
        text = ": ".join(str(p) for p in parts if p)
    else:
        text = str(error) if error else ""
    if not text and raw_status == "expired":
        text = "the provider says the video expired"
    return redact(text)[:_MAX_MESSAGE_CHARS] or None


def _progress(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return max(0, min(100, int(value)))


def _cost(metadata: object) -> tuple[float | None, bool]:
    """metadata.cost once done (authoritative on Lumenfall), else cost_estimate while running."""
    if not isinstance(metadata, Mapping):
        return None, False
    for key, estimate in (("cost", False), ("cost_estimate", True)):
        value = metadata.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return float(value), estimate
    return None, False


def page_of(payload: object, what: str) -> tuple[list[Any], bool, str | None]:
    """A list answer's rows, whether there are more, and the cursor for the next page."""
    if not isinstance(payload, Mapping) or not isinstance(payload.get("data"), list):
        raise MalformedAnswer(f"{what}: expected a list object with data")
    rows: list[Any] = payload["data"]
    last = payload.get("last_id")
    if not isinstance(last, str):
        last = next(
            (r.get("id") for r in reversed(rows) if isinstance(r, Mapping) and r.get("id")), None
        )
    return rows, bool(payload.get("has_more")) and last is not None, last


def poll_after_s(header: str | None) -> float | None:
    """`openai-poll-after-ms` in seconds, if the provider sent a usable one."""
    if header is None:
        return None
    try:
        value = float(header) / 1000.0
    except ValueError:
        return None
    return value if 0 < value < 3600 else None
